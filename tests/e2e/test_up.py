"""`exchange up` on its own local broker: ready, restart keeps data, SIGTERM leaves no Java."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from audit.keys import VERIFIER_FILE, fingerprint
from exchange.home import loose_paths
from exchange.kafka import open_kafka
from exchange.kafka.broker import pid_alive
from exchange.kafka.port import OutRecord
from exchange.kafka.security import embedded
from tests.support.gateway import GatewayProcess
from tests.support.scenario import build, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def java_pids_for(home: Path) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", f"{home}/kafka/server.properties"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [int(p) for p in out.split()]


def console_password_step(url: str, login: str, password: str) -> str:
    """The page after the console's sign-in form (as a browser: PKCE flow, cookies, CSRF)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.get("/console/sign-in")
        assert r.status_code == 303
        r = http.get(r.headers["location"])
        assert r.status_code == 200, r.text[:300]
        hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', r.text))
        r = http.post("/oauth/authorize", data={**hidden, "login": login, "password": password})
        assert r.status_code == 200, r.text[:300]
        return r.text


def test_up_twice_keeps_data_and_sigterm_stops_java(tmp_path: Path) -> None:
    home = tmp_path / "home"
    gw = GatewayProcess(home, bootstrap=None).start()
    try:
        ready = httpx.get(f"{gw.url}/readyz").json()
        assert ready == {
            "status": "ready",
            "kafka": "up",
            "database": "up",
            "kms": "up",
            "broker": "up",
        }
        creds_path = home / "admin-credentials.json"
        assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
        # the security officer's credential: its own 0600 file, never the admin's
        officer = home / "auditor-credentials.json"
        assert stat.S_IMODE(officer.stat().st_mode) == 0o600
        assert json.loads(officer.read_text())["client_id"] != gw.admin_credentials()["client_id"]
        creds = gw.admin_credentials()
        assert set(creds) == {"client_id", "client_secret", "token_url", "gateway_url"}
        # The console's first people, one per duty, each in its own 0600 file; the admin's
        # password works at the console's sign-in (then the TOTP enrolment begins).
        for name in ("console-admin.json", "console-auditor.json"):
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
        first = json.loads((home / "console-admin.json").read_text())
        assert first["login"] == "admin" and first["console"].endswith("/console")
        assert "totp-secret" in console_password_step(gw.url, first["login"], first["password"])
        dept = f"d-{uuid.uuid4().hex[:6]}"
        with gw.admin() as admin:
            admin.call("POST", "/v1/departments", json={"id": dept, "name": "D", "level": "city"})
        with gw.admin() as admin:  # a publish: SQLite -wal/-shm, keys, Kafka segments exist
            s = build(admin, gw.url, partitions=1)
            s.publisher.publish(s.topic, [{"key": "1", "value": person(1)}])
            s.close()
        assert list((home / "kafka" / "data").glob(f"{s.topic}-0/*.log"))
        assert list(home.glob("*.db-wal"))
        assert loose_paths(home) == []  # home 0700, every file 0600 (JVM's included)
        state = json.loads((home / "kafka" / "state.json").read_text())
        assert pid_alive(state["pid"])
        topic = f"{dept}.kept"
        kafka = open_kafka(f"127.0.0.1:{state['broker_port']}", security=embedded(home))
        kafka.create_topic(topic, 1)
        kafka.publish_atomically(topic, [OutRecord(b"k", b"survives restarts")])
        kafka.close()
    finally:
        gw.stop()
    assert java_pids_for(home) == []
    # The checkpoint key officers pin in the console, printed for them to copy.
    key = (home / VERIFIER_FILE).read_text().strip()
    printed = (home / "gateway.log").read_text()
    # Where the console is and how to sign in the first time.
    assert f"console   {first['console']}" in printed
    assert f"login 'admin', password in {home / 'console-admin.json'}" in printed
    assert f"audit key {key}" in printed and f"fingerprint {fingerprint(key)}" in printed
    assert not pid_alive(state["pid"])

    gw2 = GatewayProcess(home, bootstrap=None, port=gw.port).start()
    try:
        with gw2.admin() as admin:  # the same credentials still work after the restart
            ids = [d["id"] for d in admin.call("GET", "/v1/departments")]
        assert dept in ids
        state2 = json.loads((home / "kafka" / "state.json").read_text())
        assert state2["broker_port"] == state["broker_port"]  # same address for Kafka tools
        kafka = open_kafka(f"127.0.0.1:{state2['broker_port']}", security=embedded(home))
        reader = kafka.reader(topic)
        reader.seek({})
        values = [r.value for _ in range(20) for r in reader.poll(timeout_ms=500)]
        reader.close()
        kafka.close()
        assert b"survives restarts" in values
    finally:
        gw2.stop()
    assert java_pids_for(home) == []
