"""``exchange import`` as a user runs it, against the real gateway and broker: killed mid-run
and rerun, every row is in Kafka exactly once; the proposal is confirmed through a mapping
file; bad input is one clear error line."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from examples.generate_residents import write as write_residents
from exchange.client import ExchangeClient
from tests.e2e.test_import import Depts, departments
from tests.support.gateway import ThreadGateway
from tests.support.terminal import read_until_closed

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def depts(gateway: ThreadGateway, admin: ExchangeClient) -> Depts:
    return departments(admin, gateway.url)


def cli_env(gateway: ThreadGateway, client: ExchangeClient) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    return env | {
        "PYTHONPATH": str(ROOT),
        "EXCHANGE_URL": gateway.url,
        "EXCHANGE_CLIENT_ID": client.client_id,
        "EXCHANGE_CLIENT_SECRET": client._secret,
        "HOME": str(Path(env.get("HOME", "/tmp"))),
    }


def import_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "import", *args]


def test_killed_import_resumes_every_row_exactly_once(
    gateway: ThreadGateway, depts: Depts, tmp_path: Path
) -> None:
    rows = 2000
    src = tmp_path / "residents.csv"
    write_residents(src, rows)
    topic = f"{depts.owner}.residents"
    env = cli_env(gateway, depts.importer)
    args = import_cmd(str(src), "--topic", topic, "--yes", "--batch-size", "20", "-o", "json")
    checkpoint = tmp_path / f"residents.csv.{topic}.import.json"
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists():
            done = json.loads(checkpoint.read_text())["batches"]
            if done >= 8:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # a crash: no cleanup, batches in flight
    proc.communicate()
    state = json.loads(checkpoint.read_text())
    assert state["batches"] >= 8 and not state["complete"], "the import ended before the kill"

    rerun = subprocess.run(args, env=env, capture_output=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr.decode()
    summary = json.loads(rerun.stdout)
    assert summary["resumed_after_rows"] == state["ordinal"] > 0
    assert summary["resumed_after_rows"] + summary["rows_read"] == rows
    assert summary["rejected"] == 0

    depts.grant(topic, ["seq"])
    got = depts.receive(topic, rows, timeout=120)
    seen = collections.Counter(r["value"]["seq"] for r in got)
    assert sorted(seen) == list(range(1, rows + 1))
    assert max(seen.values()) == 1, [s for s, n in seen.items() if n > 1][:10]


def test_proposal_confirmed_through_a_mapping_file(
    gateway: ThreadGateway, depts: Depts, tmp_path: Path
) -> None:
    src = tmp_path / "residents.csv"
    write_residents(src, 30)
    mapping = tmp_path / "mapping.json"
    topic = f"{depts.owner}.people"
    env = cli_env(gateway, depts.importer)
    args = import_cmd(str(src), "--topic", topic, "--mapping", str(mapping))
    first = subprocess.run(args, env=env, capture_output=True, timeout=120, check=False)
    assert first.returncode == 2, first.stderr.decode()  # not confirmed: nothing published
    assert "--yes" in first.stderr.decode() and mapping.exists()
    assert "secret" in first.stderr.decode()  # the proposal was shown
    saved: dict[str, Any] = json.loads(mapping.read_text())
    for f in saved["fields"]:
        if f["name"] == "birth_date":
            f["classification"] = "sensitive"  # the officer's edit
    mapping.write_text(json.dumps(saved, ensure_ascii=False))
    second = subprocess.run(args, env=env, capture_output=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr.decode()
    out = second.stdout.decode()
    assert "published" in out and "30" in out
    fields = {
        f["path"]: f["classification"]
        for f in depts.importer.call("GET", f"/registry/subjects/{topic}-value/versions/1/fields")
    }
    assert fields["birth_date"] == "sensitive" and fields["id_number"] == "secret"


def bad(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda t: bad(t, "x.csv", b""), [], "is empty"),
        (lambda t: bad(t, "x.csv", b"\x00\x01\x02PK\x00\x00\x00\x00\x00"), [], "binary"),
        (lambda t: bad(t, "x.csv", b"id,name\n"), [], "no data rows"),
        (lambda t: bad(t, "x.xlsx", b"not a zip"), [], "not a readable .xlsx"),
        (lambda t: str(t / "missing.csv"), [], "no such file"),
        (lambda t: "nosuchdb://db", ["--table", "t"], "bad SQLAlchemy URL"),
        (lambda t: f"sqlite:///{t}/x.db", ["--table", "t"], "no such table"),
    ],
)
def test_bad_input_is_one_clear_line(
    gateway: ThreadGateway,
    depts: Depts,
    tmp_path: Path,
    make: Any,
    extra: list[str],
    message: str,
) -> None:
    env = cli_env(gateway, depts.importer)
    args = ["import", make(tmp_path), "--topic", f"{depts.owner}.x", "--yes", *extra]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_unknown_sheet_lists_the_sheets(
    gateway: ThreadGateway, depts: Depts, tmp_path: Path
) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = "2026"
    wb.active.append(["a"])
    wb.active.append([1])
    wb.save(tmp_path / "book.xlsx")
    env = cli_env(gateway, depts.importer)
    args = ["import", str(tmp_path / "book.xlsx"), "--sheet", "2025", "--topic", "a.b", "--yes"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1
    assert "no sheet '2025'; its sheets: 2026" in result.output


def test_at_a_terminal_the_proposal_is_edited_and_a_progress_bar_shown(
    gateway: ThreadGateway, depts: Depts, tmp_path: Path
) -> None:
    """As a person types it: stdin and stderr on a pseudo-terminal, the proposal edited at the
    prompt (one field made secret), then accepted; the bar is drawn while rows go out."""
    import pty

    src = tmp_path / "residents.csv"
    write_residents(src, 3000)
    topic = f"{depts.owner}.typed"
    main, child = pty.openpty()
    os.write(main, b"birth_date=secret\ny\n")  # the terminal holds the lines until read
    proc = subprocess.Popen(
        import_cmd(str(src), "--topic", topic, "--batch-size", "100"),
        env=cli_env(gateway, depts.importer) | {"TERM": "xterm"},
        stdin=child, stdout=subprocess.PIPE, stderr=child,
    )  # fmt: skip
    os.close(child)
    screen = read_until_closed(main)
    out, _ = proc.communicate(timeout=300)
    os.close(main)
    shown = screen.decode(errors="replace")
    assert proc.returncode == 0, shown[-2000:]
    assert "proposed schema" in shown and "importing" in shown  # the table, then the bar
    assert "published" in out.decode() and "3,000" in out.decode()
    fields = {
        f["path"]: f["classification"]
        for f in depts.importer.call("GET", f"/registry/subjects/{topic}-value/versions/1/fields")
    }
    assert fields["birth_date"] == "secret" and fields["id_number"] == "secret"
