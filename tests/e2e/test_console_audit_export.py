"""The officer's export streams every matching event — more than one page of 1,000 — in one
file whose proofs all verify against the signed checkpoint it starts with, offline and with
``exchange audit verify-export``. The events are appended straight through the gateway's
audit sink (fast); the export is read over HTTP with a real console session."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from audit.keys import VERIFIER_FILE
from audit.offline import verify_export
from audit.service import Filters
from exchange.auditing import AuditRecord
from gateway.console.web import SESSION_COOKIE
from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
ROOT = Path(__file__).resolve().parents[2]
MANY = 1_500  # more than one page (audit.service.MAX_PAGE = 1,000)


@pytest.fixture(scope="module")
def department(gateway: ThreadGateway) -> str:
    dept = f"bulk-{uuid.uuid4().hex[:8]}"
    records = [
        AuditRecord(
            "record.published",
            actor="bulk-publisher",
            department=dept,
            topic=f"{dept}.people",
            data={"n": n},
            subjects=(f"subject-{n % 7}",),
        )
        for n in range(MANY)
    ]
    gateway.services.audit.append_many(records)
    return dept


def officer_session(gateway: ThreadGateway) -> str:
    """What an auditor's browser holds after signing in (the sign-in itself is tested in
    test_console_signin.py)."""
    return gateway.services.console_sessions.create(
        login=f"officer-{uuid.uuid4().hex[:6]}",
        principal_id="bulk-officer",
        department="audit-office",
        roles=frozenset({"auditor"}),
        issuer=gateway.services.tokens.issuer,
    )


def download(gateway: ThreadGateway, fmt: str, department: str) -> httpx.Response:
    cookies = {SESSION_COOKIE: officer_session(gateway)}
    params = {"format": fmt, "department": department}
    r = httpx.get(f"{gateway.url}/console/audit/export", params=params, cookies=cookies, timeout=60)
    assert r.status_code == 200, r.text[:500]
    return r


def verify_cli(path: Path, key: str) -> str:
    """``exchange audit verify-export FILE --key KEY``: what it says up to the first '('."""
    cli = [sys.executable, "-m", "cli.main", "audit", "verify-export", str(path), "--key", key]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split(",")[0].strip()


def test_jsonl_export_of_every_event_verifies(
    gateway: ThreadGateway, department: str, tmp_path: Path
) -> None:
    r = download(gateway, "jsonl", department)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = r.text.splitlines()
    assert len(lines) == MANY + 1  # the checkpoint, then every event: no cap, no cursor
    indexes = [json.loads(line)["event"]["index"] for line in lines[1:]]
    assert indexes == sorted(set(indexes))  # in log order, none twice
    key = (gateway.home / VERIFIER_FILE).read_text().strip()
    report = verify_export(lines, key)
    assert report.ok and report.events == MANY and report.checkpoints == 1, report.line()

    path = tmp_path / "audit-events.jsonl"
    path.write_text(r.text, encoding="utf-8")
    assert verify_cli(path, key) == f"ok: {MANY} events"
    tampered = [line.replace('"n": 1200}', '"n": 1201}') for line in lines]
    bad = verify_export(tampered, key)
    assert not bad.ok and "edited after export" in bad.detail


def test_csv_export_of_every_event_verifies(
    gateway: ThreadGateway, department: str, tmp_path: Path
) -> None:
    r = download(gateway, "csv", department)
    note = base64.b64decode(r.headers["X-Audit-Checkpoint"]).decode()
    key = (gateway.home / VERIFIER_FILE).read_text().strip()
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == MANY and {row["department"] for row in rows} == {department}
    assert len({row["tree_size"] for row in rows}) == 1  # one checkpoint for the whole file
    assert base64.b64decode(rows[0]["checkpoint"]).decode() == note  # in the file itself
    assert all(not row["checkpoint"] for row in rows[1:])
    path = tmp_path / "audit-events.csv"
    path.write_bytes(r.content)  # as the browser saves it
    assert verify_cli(path, key) == f"ok: {MANY} events"


def test_export_reads_page_by_page_as_of_its_checkpoint(
    gateway: ThreadGateway, department: str
) -> None:
    """Pages of bounded size, read as they are consumed; events appended after the export
    began are not in it (its proofs are all against the checkpoint it began with)."""
    cp, pages = gateway.services.audit_review.export(Filters(department=department), page=400)
    first = next(pages)
    late = AuditRecord("record.published", actor="bulk-publisher", department=department)
    gateway.services.audit.append_many([late] * 3)
    rest = list(pages)
    sizes = [len(p) for p in [first, *rest]]
    assert sizes == [400, 400, 400, 300]
    assert {r["tree_size"] for p in [first, *rest] for r in p} == {cp.size}
