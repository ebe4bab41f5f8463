"""README's "Your first ten minutes", run exactly as written (parsed from the README, so it
cannot rot) against a real gateway and broker: the county's GBK export published, the city
department receiving only its granted fields, the officer seeing it in the audit log."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
ROOT = Path(__file__).resolve().parents[2]


def tutorial_commands() -> str:
    """The shell block of the section, minus ``make up`` (the test's gateway stands in)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your first ten minutes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "the tutorial has a `make up` block and a command block"
    assert blocks[0].strip().startswith("make up")
    return str(blocks[1])


def test_readme_opens_with_the_tutorial() -> None:
    readme = (ROOT / "README.md").read_text()
    first_heading = re.search(r"^## .*$", readme, flags=re.M)
    assert first_heading is not None and first_heading.group(0) == "## Your first ten minutes"


def test_tutorial_runs_as_written(gateway: ThreadGateway, tmp_path: Path) -> None:
    work = tmp_path / "repo"  # stands in for the checkout: examples and the home of `make up`
    (work / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "residents-gbk.csv", work / "examples")
    (work / ".exchange").symlink_to(gateway.home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200"}
    env |= {"PYTHONPATH": str(ROOT), "PYTHON": sys.executable}
    script = (
        "set -euo pipefail\n"
        # the worktree's code, whatever `exchange` is on PATH
        'exchange() { "$PYTHON" -m cli.main "$@"; }\n' + tutorial_commands()
    )
    run = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert re.search(r"published\W+20\b", out), out  # the import's summary
    # What the city department received: the granted fields only.
    assert "测试甲" in out and "birth_date" in out
    assert "999999" not in out  # identity numbers (secret) never reached it
    assert "1390000" not in out and "示例省" not in out  # nor mobiles, nor addresses
    # The officer's view.
    for event in ("topic.created", "agreement.approved", "record.published", "records.delivered"):
        assert event in out, event
