"""No record value, token or secret in any log; no sensitive value at rest in plaintext.

One gateway of its own (so its home holds only this run's databases), every log record of the
process at DEBUG captured to a file, then a full publish → agreement → consent → subscribe →
pull/SSE flow plus requests that fail inside the data path. Afterwards the log must hold
none of the published values, bearer tokens or client secrets, and neither the broker's
segment files nor the SQLite databases of the home may hold a sensitive value in plaintext.
"""

from __future__ import annotations

import json
import logging
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import PERSON_SCHEMA, new_client

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

CAPTURED = ("", "uvicorn", "uvicorn.access")  # uvicorn.error propagates to uvicorn
LEVELS = (*CAPTURED, "uvicorn.error")


@dataclass
class Run:
    gateway: ThreadGateway
    log: Path
    sensitive: list[str] = field(default_factory=list)  # never in logs, segments or databases
    public: list[str] = field(default_factory=list)  # never in logs
    doubles: list[float] = field(default_factory=list)  # secret doubles, as Avro encodes them
    credentials: list[str] = field(default_factory=list)  # tokens and secrets: never in logs
    statuses: dict[str, int] = field(default_factory=dict)


def _record(tag: str, i: int) -> dict[str, Any]:
    return {
        "citizen_id": f"CID{tag}{i:04d}",
        "name": f"Name{tag}{i}",
        "district": f"District{tag}{i}",
        "income": 7_123_456.25 + i,
        "phone": f"PHONE{tag}{i}",
        "address": {"street": f"STREET{tag}{i}", "city": f"City{tag}{i}"},
    }


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("leak-home")
    log = home / "captured.log"
    handler = logging.FileHandler(log, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    saved = {name: logging.getLogger(name).level for name in LEVELS}
    gw = ThreadGateway(home, kafka_bootstrap)
    for name in CAPTURED:
        logging.getLogger(name).addHandler(handler)
    for name in LEVELS:  # after uvicorn's config, which sets its loggers' levels
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        gw.start()
        r = Run(gw, log)
        with gw.admin() as admin:
            flow(r, admin)
    finally:
        gw.stop()
        for name, level in saved.items():
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(level)
        handler.close()
    yield r


def flow(r: Run, admin: ExchangeClient) -> None:
    url = r.gateway.url
    tag = uuid.uuid4().hex[:10]
    owner, consumer = f"leak-own-{tag[:6]}", f"leak-use-{tag[:6]}"
    for dept in (owner, consumer):
        admin.call("POST", "/v1/departments", json={"id": dept, "name": dept, "level": "city"})
    pub = new_client(admin, url, owner, ["publisher", "registry:write", "registry:read"])
    steward = new_client(admin, url, owner, ["steward"])
    registrar = new_client(admin, url, owner, ["consent_registrar"])
    sub = new_client(admin, url, consumer, ["subscriber"])
    clients = [admin, pub, steward, registrar, sub]
    topic = f"{owner}.residents"
    r.statuses["register"] = pub.request(
        "POST",
        f"/registry/subjects/{topic}-value/versions",
        json={"schema": json.dumps(PERSON_SCHEMA)},
    ).status_code
    admin.call(
        "POST",
        "/v1/topics",
        json={"name": topic, "owner": owner, "partitions": 1, "value_subject": f"{topic}-value"},
    )
    records = [_record(tag, i) for i in range(3)]
    for rec in records:
        r.sensitive += [rec["citizen_id"], rec["phone"], rec["address"]["street"]]
        r.sensitive.append(repr(rec["income"]))
        r.doubles.append(rec["income"])
        r.public += [rec["name"], rec["district"], rec["address"]["city"]]
    # Keys are not classified and stay plaintext in Kafka: a publisher must not put personal
    # data in them (README, Security guarantees).
    pub.publish(topic, [{"key": f"k{i}", "value": rec} for i, rec in enumerate(records)])

    agreement = sub.call(
        "POST",
        "/v1/agreements",
        json={
            "topic": topic,
            "fields": ["citizen_id", "name", "income", "phone", "address.street"],
            "purpose": "leak test",
            "legal_basis": "test",
            "valid_from": "2020-01-01T00:00:00Z",
            "valid_until": "2099-01-01T00:00:00Z",
        },
    )["id"]
    steward.call("POST", f"/v1/agreements/{agreement}/approve", json={})
    registrar.call(
        "POST",
        "/v1/consents",
        json={
            "subject": records[0]["citizen_id"],
            "consumer": consumer,
            "topic": topic,
            "purpose": "leak test",
            "valid_until": "2099-01-01T00:00:00Z",
        },
    )
    registrar.call("POST", "/v1/consents/lookup", json={"subject": records[0]["citizen_id"]})
    sid = _subscribe(sub, topic)
    got = sub.call("GET", f"/v1/subscriptions/{sid}/records", params={"wait_ms": 2000})
    r.statuses["delivered"] = sum(
        x["value"].get("citizen_id") == records[0]["citizen_id"] for x in got["records"]
    )
    _sse_one(sub, url, sid)
    failing(r, pub, topic, tag)
    r.credentials += [c.token() for c in clients] + [c._secret for c in clients]
    for c in clients:
        c.close()


def _subscribe(sub: ExchangeClient, topic: str) -> str:
    import time

    deadline = time.monotonic() + 5
    while True:  # the delivery side learns of the approval within about a second
        try:
            return sub.subscribe(topic)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _sse_one(sub: ExchangeClient, url: str, sid: str) -> None:
    headers = {"Authorization": f"Bearer {sub.token()}"}
    with httpx.stream(
        "GET", f"{url}/v1/subscriptions/{sid}/stream", headers=headers, timeout=10
    ) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:"):
                break


def failing(r: Run, pub: ExchangeClient, topic: str, tag: str) -> None:
    """Requests refused inside the data path, each carrying sensitive values."""
    bad = _record(tag, 90)
    r.sensitive += [bad["citizen_id"], bad["phone"]]
    path = f"/v1/topics/{topic}/records"
    wrong_type = {**bad, "income": bad["phone"]}
    unknown_field = {**bad, "extra": bad["citizen_id"]}
    deep = "[" * 1200 + json.dumps(bad["citizen_id"]) + "]" * 1200
    bodies: dict[str, bytes] = {
        "wrong_type": json.dumps({"records": [{"value": wrong_type}]}).encode(),
        "unknown_field": json.dumps({"records": [{"value": unknown_field}]}).encode(),
        "surrogate_key": (
            '{"records": [{"key": "\\ud800'
            + bad["citizen_id"]
            + '", "value": '
            + json.dumps(bad)
            + "}]}"
        ).encode(),
        "deep": (
            '{"records": [{"value": ' + json.dumps(bad)[:-1] + ', "x": ' + deep + "}}]}"
        ).encode(),
        "not_json": b'{"records": [' + bad["citizen_id"].encode(),
    }
    for name, body in bodies.items():
        r.statuses[name] = _status(pub, path, body, "application/json")
    frame = struct.pack(">I", 0xFFFFFFFF) + struct.pack(">I", 40) + b"\x00\x00\x00\x00\x01"
    frame += bad["phone"].encode()
    r.statuses["bad_frame"] = _status(pub, path, frame, "application/vnd.exchange.avro")


def _status(c: ExchangeClient, path: str, body: bytes, ctype: str) -> int:
    """The answer's status; -1 if the server dropped the connection (a 500 of item 8)."""
    try:
        return c.request("POST", path, content=body, headers={"Content-Type": ctype}).status_code
    except httpx.TransportError:
        return -1


def test_the_flow_ran(run: Run) -> None:
    """The scans below mean something only if the values went through."""
    assert run.statuses["register"] == 200
    assert run.statuses["delivered"] == 1
    assert run.log.stat().st_size > 0


def test_no_value_token_or_secret_in_the_logs(run: Run) -> None:
    text = run.log.read_text(encoding="utf-8", errors="replace")
    leaked = [v for v in run.sensitive + run.public if v in text]
    assert not leaked, f"record values in the log: {leaked}"
    leaked_creds = [f"{c[:6]}..." for c in run.credentials if c in text]
    assert not leaked_creds, f"tokens or secrets in the log: {leaked_creds}"


def test_no_sensitive_plaintext_in_broker_segments(run: Run, kafka_log_dir: Path) -> None:
    segments = [p for p in kafka_log_dir.rglob("*") if p.is_file() and p.suffix == ".log"]
    assert segments
    needles = [v.encode() for v in run.sensitive] + [struct.pack("<d", d) for d in run.doubles]
    found = [p.parent.name for p in segments for n in needles if n in p.read_bytes()]
    assert not found, f"sensitive plaintext in segments of {sorted(set(found))}"


def test_no_sensitive_plaintext_in_the_databases(run: Run) -> None:
    home = run.gateway.home
    files = [
        p for p in home.rglob("*") if p.is_file() and (".db" in p.name or p.suffix == ".sqlite")
    ]
    assert any(p.suffix == ".db" for p in files)
    found = [(p.name, v) for p in files for v in run.sensitive if v.encode() in p.read_bytes()]
    assert not found, f"sensitive plaintext in the databases: {found}"
