"""The whole journey with the ``exchange`` command only, as separate processes against a real
gateway (``exchange up`` on the test broker): login, departments, clients, schema, topic,
publish, agreement, tail/subscribe, audit — plus the examples and the failure messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audit.event_types import EVENT_TYPES
from cli.main import app
from tests.support.gateway import GatewayProcess
from tests.support.terminal import read_until_closed

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
_SHARED_ENV = ("EXCHANGE_PROFILE", "EXCHANGE_URL", "EXCHANGE_CLIENT_ID", "EXCHANGE_CLIENT_SECRET",
               "EXCHANGE_HOME", "EXCHANGE_CONFIG", "EXCHANGE_OUTPUT")  # fmt: skip


@dataclass
class World:
    gateway: GatewayProcess
    config: Path  # XDG_CONFIG_HOME of the "user"
    owner: str
    consumer: str
    topic: str
    agreement: str
    granted: list[str]

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env |= {"PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(self.config), "COLUMNS": "200"}
        return env | extra

    def run(
        self, *args: str, ok: bool = True, input: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
            input=input,
            cwd=self.config,  # not the repo: no ./.exchange to fall back on by accident
        )
        assert "Traceback" not in r.stderr + r.stdout, r.stderr
        if ok:
            assert r.returncode == 0, f"{args}: {r.stderr}"
        return r

    def invoke(self, *args: str, ok: bool = True, **env: str) -> Any:
        """In this process (typer's CliRunner): for checks that need no process of their own."""
        unset: dict[str, str | None] = {k: None for k in _SHARED_ENV}
        r = CliRunner().invoke(app, list(args), env={**unset, **self.env(), **env})
        assert "Traceback" not in r.output, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
        if ok:
            assert r.exit_code == 0, f"{args}: {r.output}"
        return r

    def json(self, *args: str, **env: str) -> Any:
        return json.loads(self.run(*args, "--output", "json", **env).stdout)

    def ijson(self, *args: str, **env: str) -> Any:
        """``json`` in this process: a new interpreter per command costs seconds under load."""
        return json.loads(self.invoke(*args, "--output", "json", **env).stdout)


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("cli-home")
    gw = GatewayProcess(home, kafka_bootstrap).start()
    tag = uuid.uuid4().hex[:6]
    w = World(gw, tmp_path_factory.mktemp("cli-user"), f"health-{tag}", f"civil-{tag}",
              f"health-{tag}.births", "", [])  # fmt: skip
    try:
        _set_up(w)
        yield w
    finally:
        gw.stop()


def _set_up(w: World) -> None:
    """The journey's first half; each step is one command a new user would type."""
    creds = str(w.gateway.home / "admin-credentials.json")
    login = w.json("login", "--profile", "admin", "--credentials", creds)
    assert "admin" in login["roles"] and login["default"] is True
    cfg = w.config / "exchange" / "profiles.toml"
    assert cfg.stat().st_mode & 0o777 == 0o600 and "admin" in w.run("profiles", "list").stdout
    w.run("departments", "create", w.owner, "--name", "Health", "--level", "city")
    w.run("departments", "create", w.consumer, "--name", "Civil Affairs", "--level", "county")
    assert {w.owner, w.consumer} <= {d["id"] for d in w.json("departments", "list")}
    w.run("clients", "create", w.owner, "--name", "births app", "--role", "publisher",
          "--role", "steward", "--role", "registry:write", "--save-profile", "health")  # fmt: skip
    made = w.json("clients", "create", w.consumer, "--name", "benefits",
                  "--role", "subscriber", "--save-profile", "civil")  # fmt: skip
    assert "client_secret" not in made and made["profile"] == "civil"
    assert "s3cret" not in cfg.read_text()
    w.run("topics", "create", w.topic, "--schema", str(EXAMPLES / "births.avsc"),
          "--title", "Births", "--profile", "health")  # fmt: skip
    fields = w.json("schema", "show", f"{w.topic}-value", "--profile", "health")["fields"]
    mother = next(f for f in fields if f["path"] == "mother_id")
    assert (mother["classification"], mother["data_subject"]) == ("sensitive", True)
    sent = w.json("publish", w.topic, str(EXAMPLES / "births.jsonl"), "--key", "birth_id",
                  "--profile", "health", "--idempotency-key", "births-1")  # fmt: skip
    assert sent["records"] == 3
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    asked = w.json("agreements", "request", "--topic", w.topic, "--field", "birth_id",
                   "--field", "hospital", "--field", "mother_id", "--purpose", "child benefit",
                   "--valid-until", until, "--profile", "civil")  # fmt: skip
    w.granted = ["birth_id", "hospital"]
    done = w.json("agreements", "approve", asked["id"], "--field", "birth_id", "--field",
                  "hospital", "--profile", "health")  # fmt: skip
    assert done["status"] == "approved" and done["granted_fields"] == w.granted
    w.agreement = asked["id"]


def test_subscriber_sees_only_granted_fields(world: World) -> None:
    tailed = world.run("tail", world.topic, "--from", "earliest", "--count", "3", "-o", "json",
                       "--profile", "civil")  # fmt: skip
    records = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert sorted(r["value"]["birth_id"] for r in records) == ["B-0001", "B-0002", "B-0003"]
    assert all(
        {k for k, v in r["value"].items() if v is not None} <= set(world.granted) for r in records
    )
    assert "Example Mother" not in tailed.stdout
    sub = world.json("subscribe", "create", world.topic, "--profile", "civil")["id"]
    first_two: set[str] = set()
    for _ in range(5):  # a page holds what has arrived (maybe one partition's records so far)
        page = world.run("subscribe", "pull", sub, "--max", str(2 - len(first_two)), "-o", "json",
                         "--profile", "civil")  # fmt: skip
        first_two |= {json.loads(x)["value"]["birth_id"] for x in page.stdout.splitlines()}
        if len(first_two) >= 2:
            break
    assert len(first_two) == 2
    human = world.run("subscribe", "pull", sub, "--profile", "civil")  # the third, committed
    (third,) = {"B-0001", "B-0002", "B-0003"} - first_two
    assert third in human.stdout and "1 record(s)" in human.stderr
    out = world.config / "replay.jsonl"
    world.run("subscribe", "replay", sub, "--out", str(out), "--idle", "20", "--profile", "civil")
    assert len(out.read_text().splitlines()) == 3
    world.run("subscribe", "close", sub, "--profile", "civil")


def _ctrl_c_as_at_a_terminal() -> None:
    # A suite started in the background (`make test &`, nohup) inherits SIGINT ignored, and
    # Python then never raises KeyboardInterrupt: give the child the terminal's default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_tail_follows_live_and_stops_cleanly_on_ctrl_c(world: World) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "tail", world.topic, "--profile", "civil"],
        env=world.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=world.config, preexec_fn=_ctrl_c_as_at_a_terminal,
    )  # fmt: skip
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert "following" in proc.stderr.readline()  # subscribed at the end: live only
        time.sleep(1.0)  # let the stream connect before the record is published
        value = json.loads((EXAMPLES / "births.jsonl").read_text().splitlines()[0])
        value["birth_id"] = "B-LIVE"
        world.run("publish", world.topic, "--value", json.dumps(value), "--profile", "health")
        line = proc.stdout.readline()
        assert "B-LIVE" in line and "Example Mother" not in line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err and "stopped after 1 record" in err
    subs = world.json("subscribe", "list", "--profile", "civil")
    assert all(s["status"] != "active" or s["topic"] != world.topic for s in subs), subs


def test_examples_run_against_the_gateway(world: World) -> None:
    health = world.json("whoami", "--profile", "health")
    civil_env = _profile_env(world, "civil")
    health_env = _profile_env(world, "health")
    assert health["department"] == world.owner and "publisher" in health["roles"]
    other = world.config / "more.jsonl"
    rows = [json.loads(x) for x in (EXAMPLES / "births.jsonl").read_text().splitlines()]
    other.write_text("".join(json.dumps(r | {"birth_id": r["birth_id"] + "-py"}) + "\n"
                             for r in rows))  # fmt: skip
    pub = _script(world, [sys.executable, str(EXAMPLES / "publisher.py"), world.topic,
                          str(other)], EXCHANGE_PROFILE="health")  # fmt: skip
    assert "published 3 record(s)" in pub
    sub = _script(world, [sys.executable, str(EXAMPLES / "subscriber.py"), world.topic, "3"],
                  **civil_env)  # fmt: skip
    got = [json.loads(x)["value"] for x in sub.splitlines()]
    assert len(got) == 3 and all(set(v) <= {*world.granted} or v.get("mother_name") is None
                                 for v in got)  # fmt: skip
    assert all(v["birth_id"].startswith("B-") and v.get("mother_id") is None for v in got)
    sh = EXAMPLES / "curl_client.sh"
    curl = rows[0] | {"birth_id": "B-curl"}
    (world.config / "curl.jsonl").write_text(json.dumps(curl) + "\n")
    out = _script(world, ["sh", str(sh), "publish", world.topic,
                          str(world.config / "curl.jsonl")], **health_env)  # fmt: skip
    assert json.loads(out)["records"] == 1
    read = _script(world, ["sh", str(sh), "read", world.topic, "10"], **civil_env)
    values = [json.loads(x) for x in read.splitlines()]
    assert "B-curl" in {v["birth_id"] for v in values}
    assert all(v.get("mother_name") is None for v in values)


def _profile_env(world: World, name: str) -> dict[str, str]:
    from exchange.profiles import ProfileStore

    p = ProfileStore.load(world.config / "exchange" / "profiles.toml").get(name)
    return {
        "EXCHANGE_URL": p.url,
        "EXCHANGE_CLIENT_ID": p.client_id,
        "EXCHANGE_CLIENT_SECRET": p.client_secret,
    }


def _script(world: World, argv: list[str], **env: str) -> str:
    r = subprocess.run(
        argv, env=world.env(**env), capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


def test_audit_through_the_gateway_and_offline_export_check(world: World) -> None:
    officer = ["--home", str(world.gateway.home)]  # its auditor-credentials.json
    before = world.json("audit", "query", "--type", "audit.read", "--limit", "1000", *officer)
    published = world.json("audit", "query", "--topic", world.topic, "--type",
                           "record.published", *officer)  # fmt: skip
    assert len(published["events"]) >= 2 and published["checkpoint"].startswith("exchange")
    table = world.run("audit", "query", "--topic", world.topic, *officer)
    assert "record.published" in table.stdout and "agreement" in table.stdout
    after = world.json("audit", "query", "--type", "audit.read", "--limit", "1000", *officer)
    reads = [e["event"]["data"] for e in after["events"]][len(before["events"]) :]
    assert {
        "what": "events",
        "topic": world.topic,
        "type": "record.published",
        "format": "json",
    }.items() <= reads[0].items()  # the CLI's read left its trace
    export = world.config / "audit.jsonl"
    done = world.json("audit", "export", "--out", str(export), *officer)
    assert done["events"] > 10
    rows = [json.loads(x) for x in export.read_text().splitlines()]
    seen = {r["event"]["type"] for r in rows if "event" in r}
    assert seen - EVENT_TYPES.keys() == set()  # every type this journey emitted is documented
    key = rows[0]["verifier_key"]
    ok = world.run("audit", "verify-export", str(export), "--key", key)
    assert ok.stdout.startswith(f"ok: {done['events']} events")
    lines = export.read_text().splitlines()
    row = json.loads(lines[5])
    row["event"]["actor"] = "someone-else"
    lines[5] = json.dumps(row)
    forged = world.config / "forged.jsonl"
    forged.write_text("\n".join(lines) + "\n")
    bad = world.run("audit", "verify-export", str(forged), ok=False)
    assert bad.returncode == 1
    assert f"event {row['event']['index']}: the event differs from its signed entry" in bad.stderr
    cp = world.config / "cp.txt"
    world.run("audit", "checkpoint", "--out", str(cp), *officer)
    world.run("departments", "list", "--profile", "admin")  # the log grows past the checkpoint
    verified = world.run("audit", "verify", "--from-checkpoint", str(cp), "--key", key, *officer)
    assert verified.stdout.startswith("ok: ")
    assert "extends the trusted checkpoint" in verified.stdout
    admin = world.run("audit", "query", "--profile", "admin", ok=False)  # admins may not read
    assert admin.returncode == 1 and "HTTP 403" in admin.stderr


def test_failures_say_what_to_do(world: World) -> None:
    bad_level = world.invoke("departments", "create", "x-dept", "--name", "X", "--level",
                             "state", ok=False)  # fmt: skip
    assert bad_level.exit_code == 1
    assert "body.level:" in bad_level.stderr and "'county'" in bad_level.stderr
    role = world.invoke("clients", "create", world.owner, "--name", "x", "--role", "root",
                        ok=False)  # fmt: skip
    assert "unknown role 'root' (valid roles: admin, auditor" in role.stderr
    cid = world.json("whoami", "--profile", "health")["client_id"]
    wrong = world.run("whoami", "--url", world.gateway.url, "--client-id", cid,
                      "--client-secret", "not-the-secret", ok=False)  # fmt: skip
    assert wrong.returncode == 4
    assert f"refused the credentials of client '{cid}'" in wrong.stderr
    assert "wrong client id or secret" in wrong.stderr and "None" not in wrong.stderr
    unknown = world.invoke("topics", "list", "--profile", "nobody", ok=False)
    assert unknown.exit_code == 2 and "known: admin, civil, health" in unknown.stderr
    bad_record = world.invoke("publish", world.topic, "--value", '{"birth_id": 1}',
                              "--profile", "health", ok=False)  # fmt: skip
    assert bad_record.exit_code == 1 and "record 0" in bad_record.stderr
    env_only = world.invoke("topics", "show", world.topic, **_profile_env(world, "civil"))
    assert world.topic in env_only.stdout
    denied = world.invoke("topics", "create", f"{world.consumer}.x", "--profile", "civil",
                          ok=False)  # fmt: skip
    assert "HTTP 403" in denied.stderr and "exchange whoami" in denied.stderr
    down = world.run("departments", "list", "--url", "http://127.0.0.1:9", "--profile",
                     "admin", ok=False)  # fmt: skip
    assert down.returncode == 3 and "cannot reach the gateway at http://127.0.0.1:9" in down.stderr


def test_keys_through_the_gateway(world: World) -> None:
    keys = world.json("keys", "list", "--topic", world.topic, "--profile", "health")
    assert {k["field"] for k in keys} >= {"mother_id", "mother_name", "diagnosis"}
    assert all("key" not in k for k in keys)  # ids and versions, never key material
    rotated = world.json("keys", "rotate", "--topic", world.topic, "--field", "diagnosis",
                         "--profile", "health")  # fmt: skip
    assert max(k["version"] for k in rotated if k["field"] == "diagnosis") == 2


def test_people_accounts_from_the_cli(world: World) -> None:
    login = f"li.wei.{uuid.uuid4().hex[:4]}"
    made = world.ijson("people", "create", world.owner, login, "--name", "Li Wei", "--role",
                      "publisher", "--profile", "admin")  # fmt: skip
    assert made["login"] == login and len(made["password"]) >= 16 and not made["disabled"]
    listed = world.invoke("people", "list", "--department", world.owner, "--profile", "admin")
    assert login in listed.stdout and made["password"] not in listed.stdout
    off = world.ijson("people", "disable", login, "--profile", "admin")
    assert off["disabled"] is True and "password" not in off
    assert world.ijson("people", "enable", login, "--profile", "admin")["disabled"] is False
    assert (
        world.ijson("people", "reset-totp", login, "--profile", "admin")["totp_enrolled"] is False
    )
    auditor = json.loads((world.gateway.home / "auditor-credentials.json").read_text())
    as_auditor = {"EXCHANGE_URL": world.gateway.url, "EXCHANGE_CLIENT_ID": auditor["client_id"],
                  "EXCHANGE_CLIENT_SECRET": auditor["client_secret"]}  # fmt: skip
    refused = world.invoke("people", "disable", login, ok=False, **as_auditor)
    assert refused.exit_code == 1 and "HTTP 403" in refused.stderr  # auditors: auditor people
    dup = world.invoke("people", "create", world.owner, login, "--name", "x", "--role",
                       "publisher", "--profile", "admin", ok=False)  # fmt: skip
    assert dup.exit_code == 1 and "already exists" in dup.stderr
    officer = ["--home", str(world.gateway.home)]
    trail = world.ijson("audit", "query", "--type", "admin.*", "--limit", "1000", *officer)
    mine = [e["event"] for e in trail["events"] if e["event"]["data"].get("person") == login]
    assert [e["type"] for e in mine] == [
        "admin.person_created", "admin.person_disable", "admin.person_enable",
        "admin.person_reset_totp",
    ]  # fmt: skip
    denied = world.ijson("audit", "query", "--type", "authz.denied", "--limit", "1000", *officer)
    assert any(e["event"]["data"].get("person") == login for e in denied["events"])


def test_audit_show_subject_checkpoints_proofs_activity(world: World) -> None:
    officer = ["--home", str(world.gateway.home)]
    pub = world.ijson("audit", "query", "--topic", world.topic, "--type", "record.published",
                      "--limit", "1", *officer)  # fmt: skip
    index = pub["events"][0]["event"]["index"]
    shown = world.ijson("audit", "show", str(index), *officer)
    assert shown["proven"] is True and shown["event"]["index"] == index
    human = world.invoke("audit", "show", str(index), *officer)
    assert "record.published" in human.stdout
    assert f"event {index}: proven in the signed log" in human.stderr
    mother = json.loads((EXAMPLES / "births.jsonl").read_text().splitlines()[0])["mother_id"]
    found = world.ijson("audit", "query", "--subject", mother, *officer)
    assert any(e["event"]["topic"] == world.topic for e in found["events"])
    reads = world.ijson("audit", "query", "--type", "audit.read", "--limit", "1000", *officer)
    whats = [e["event"]["data"]["what"] for e in reads["events"]]
    assert whats[-2:] == ["subject_search", "events"]  # the raw id went in a body, not a URL
    world.invoke("audit", "query", "--profile", "admin", ok=False)  # a refusal, audited
    denied = world.ijson("audit", "query", "--outcome", "denied", "--limit", "1000", *officer)
    assert denied["events"] and {e["event"]["outcome"] for e in denied["events"]} == {"denied"}
    cps = world.ijson("audit", "checkpoints", "--limit", "5", *officer)["checkpoints"]
    sizes = [c["size"] for c in cps]
    assert sizes == sorted(sizes, reverse=True) and cps[0]["status"] in ("consistent", "first")
    inclusion = world.ijson("audit", "proof", str(index), "--size", str(cps[0]["size"]), *officer)
    assert inclusion["index"] == index and inclusion["size"] == cps[0]["size"]
    if len(cps) > 1:
        cons = world.ijson("audit", "proof", str(sizes[1]), "--to", str(sizes[0]), *officer)
        assert isinstance(cons["proof"], list)
    act = world.ijson("audit", "activity", "--bucket", "hour", *officer)
    assert act["totals"]["events"] > 0 and act["totals"]["denied"] > 0
    assert world.owner in {s["department"] for s in act["series"]}
    table = world.invoke("audit", "activity", "--department", world.owner, *officer)
    assert world.owner in table.stdout


def test_admin_and_subscriber_commands_beyond_the_journey(world: World, tmp_path: Path) -> None:
    from joserfc.jwk import ECKey

    admin, health, civil = ("--profile", "admin"), ("--profile", "health"), ("--profile", "civil")
    made = world.ijson("clients", "create", world.owner, "--name", "spare", "--role",
                       "subscriber", *admin)  # fmt: skip
    cid = made["client_id"]
    rotated = world.ijson("clients", "rotate", world.owner, cid, *admin)
    assert rotated["client_secret"] != made["client_secret"]
    assert world.ijson("clients", "disable", world.owner, cid, *admin)["disabled"] is True
    assert world.ijson("clients", "enable", world.owner, cid, *admin)["disabled"] is False
    roles = world.ijson("clients", "roles", world.owner, cid, "--role", "registry:read", *admin)
    assert roles["roles"] == ["registry:read"]
    jwk = tmp_path / "key.json"
    jwk.write_text(json.dumps(ECKey.generate_key("P-256").as_dict(private=False)))
    world.ijson("clients", "set-key", world.owner, cid, str(jwk), *admin)
    subject = f"{world.topic}-value"
    assert subject in {s["subject"] for s in world.ijson("schema", "list", *health)}
    assert world.ijson("schema", "versions", subject, *health) == [{"version": 1}]
    level = world.ijson("schema", "compatibility", subject, *health)
    assert level["compatibilityLevel"] in ("BACKWARD", "FULL", "FORWARD", "NONE", "FULL_TRANSITIVE",
                                           "BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE")  # fmt: skip
    shown = world.ijson("schema", "show", subject, *health)
    by_id = world.ijson("schema", "id", str(shown["id"]), *health)
    assert {"subject": subject, "version": 1} in by_id["versions"]
    assert by_id["schema"] == shown["schema"]
    assert world.ijson("schema", "mode", subject, *health)["mode"] == "READWRITE"
    spare = f"{world.owner}.spare-value"
    world.ijson("schema", "register", spare, str(EXAMPLES / "births.avsc"), *health)
    assert world.ijson("schema", "delete", spare, *health)["deleted"] == [1]
    sub = world.ijson("subscribe", "create", world.topic, *civil)["id"]
    page = world.invoke("subscribe", "pull", sub, "--no-commit", "--max", "1", *civil)
    hint = next(x for x in page.stderr.splitlines() if x.startswith("commit with: "))
    cursor = hint.split()[-1]
    world.ijson("subscribe", "commit", sub, cursor, *civil)
    assert world.ijson("subscribe", "show", sub, *civil)["cursor"] == cursor
    world.ijson("subscribe", "seek", sub, "earliest", *civil)
    assert world.ijson("subscribe", "show", sub, *civil)["cursor"] != cursor
    assert world.ijson("subscribe", "dead-letters", sub, *civil) == []
    world.invoke("subscribe", "close", sub, *civil)
    out = tmp_path / "asyncapi.json"
    world.invoke("catalog", "asyncapi", "--out", str(out), *civil)
    assert world.topic in out.read_text()
    assert isinstance(world.ijson("kms", "metrics", *admin), dict)
    world.ijson("consents", "designate", world.owner, world.consumer, *admin)
    assert world.consumer in json.dumps(world.ijson("consents", "managers", world.owner, *civil))
    world.ijson("consents", "withdraw", world.owner, world.consumer, *admin)
    assert world.ijson("consents", "lookup", "no-such-subject", *civil) == []
    kid = world.ijson("keys", "rotate-signing", *admin)
    assert kid["kid"] in kid["jwks_kids"]
    assert world.ijson("whoami", *admin)["client_id"]  # a token signed by the new key
    ready = world.ijson("status", "--url", world.gateway.url)
    assert ready["status"] == "ready" and ready["url"] == world.gateway.url
    down = world.invoke("status", "--url", "http://127.0.0.1:9", ok=False)
    assert down.exit_code == 3 and "cannot reach the gateway at http://127.0.0.1:9" in down.stderr
    shred = world.ijson("keys", "shred", "--topic", world.topic, "--field", "diagnosis",
                        "--before", "2000-01-01", "--yes", *health)  # fmt: skip
    assert shred == {"topic": world.topic, "field": "diagnosis", "shredded": 0}


def _at_a_terminal(world: World, *args: str) -> tuple[int, str]:
    """Run a command with its stderr on a pseudo-terminal (where progress bars are drawn)."""
    import pty

    main, child = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args], env=world.env(TERM="xterm"),
            stdout=subprocess.PIPE, stderr=child, cwd=world.config,
        )  # fmt: skip
        os.close(child)
        seen = read_until_closed(main)
        proc.communicate(timeout=120)
    finally:
        os.close(main)
    return proc.returncode, seen.decode(errors="replace")


def test_progress_bar_on_a_terminal_only(world: World) -> None:
    export = world.config / "bar.jsonl"
    world.ijson("audit", "export", "--out", str(export), "--home", str(world.gateway.home))
    code, screen = _at_a_terminal(world, "audit", "verify-export", str(export))
    assert code == 0 and "verifying" in screen and "━" in screen  # rich's bar, drawn
    piped = world.run("audit", "verify-export", str(export))  # stderr not a terminal
    assert "verifying" not in piped.stderr and "━" not in piped.stderr


def test_decisions_consents_and_lookups_from_the_cli(world: World) -> None:
    admin, health, civil = ("--profile", "admin"), ("--profile", "health"), ("--profile", "civil")
    assert world.ijson("departments", "show", world.owner, *admin)["level"] == "city"
    missing = world.invoke("departments", "show", "no-such-dept", *admin, ok=False)
    assert missing.exit_code == 1 and "exchange departments list" in missing.stderr
    clients = world.ijson("clients", "list", world.owner, *admin)
    assert any("publisher" in c["roles"] for c in clients)
    assert all("client_secret" not in c for c in clients)
    entry = world.ijson("catalog", "show", world.topic, *civil)
    assert (entry["topic"], entry["owner"]) == (world.topic, world.owner)
    try:
        world.invoke("profiles", "use", "civil")
        assert world.ijson("whoami")["department"] == world.consumer  # the new default
    finally:
        world.invoke("profiles", "use", "admin")
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    topic = f"{world.owner}.stillbirths"  # civil's agreement on world.topic is open: one each
    world.invoke("topics", "create", topic, "--schema", str(EXAMPLES / "births.avsc"), *health)
    ask = ("agreements", "request", "--topic", topic, "--field", "hospital", "--purpose",
           "statistics", "--valid-until", until, *civil)  # fmt: skip
    ag = world.ijson(*ask)["id"]
    assert world.ijson("agreements", "show", ag, *health)["status"] == "pending"
    world.ijson("agreements", "approve", ag, *health)
    assert world.ijson("agreements", "suspend", ag, *health)["status"] == "suspended"
    assert world.ijson("agreements", "resume", ag, *health)["status"] == "approved"
    assert world.ijson("agreements", "revoke", ag, *health)["status"] == "revoked"
    other = world.ijson(*ask)["id"]
    no_reason = world.invoke("agreements", "reject", other, *health, ok=False)
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    done = world.ijson("agreements", "reject", other, "--reason", "not needed", *health)
    assert done["status"] == "rejected"
    world.ijson("clients", "create", world.owner, "--name", "registry office", "--role",
                "consent_registrar", "--save-profile", "registrar", *admin)  # fmt: skip
    reg = ("--profile", "registrar")
    consent = world.ijson("consents", "record", "--subject", "110101199003074477", "--consumer",
                          world.consumer, "--topic", world.topic, "--purpose", "benefit check",
                          "--valid-until", until, *reg)  # fmt: skip
    cid = consent["id"]
    assert world.ijson("consents", "show", cid, *reg)["status"].lower() == "active"
    world.ijson("consents", "pause", cid, *reg)
    world.ijson("consents", "resume", cid, *reg)
    world.ijson("consents", "revoke", cid, *reg)
    versions = world.ijson("consents", "versions", cid, *reg)
    assert [v["status"].lower() for v in versions][-4:] == ["active", "paused", "active", "revoked"]
