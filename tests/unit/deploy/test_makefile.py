"""`make up` installs only what running needs, with progress; the test and benchmark extras
come only with `make test` (issue 17). Read from the Makefile itself, target by target,
with `make -n` (what make would run, without running it) on a fresh virtualenv path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def dry_run(target: str, tmp_path: Path) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout


def test_make_up_installs_the_runtime_only_and_says_so(tmp_path: Path) -> None:
    plan = dry_run("up", tmp_path)
    lines = plan.splitlines()
    installs = [ln for ln in lines if " pip install" in ln and "--upgrade pip" not in ln]
    assert installs, plan
    assert all("[test" not in ln and "bench]" not in ln for ln in installs), installs
    assert any(ln.rstrip().endswith("install -q -e .") for ln in installs), installs
    steps = [ln for ln in lines if ln.startswith('echo "==> [')]
    assert len(steps) == 3, plan  # [1/3] virtualenv, [2/3] exchange, [3/3] Kafka jars
    assert lines[-1].endswith("/bin/exchange up")


def test_make_test_adds_the_test_extras(tmp_path: Path) -> None:
    plan = dry_run("install-test", tmp_path)
    assert "install -q -e '.[test,bench]'" in plan, plan
