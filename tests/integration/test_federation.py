"""Two sites on one machine, MirrorMaker 2 between them (issue 16, "Sites and federation").

The owner site ("league") is the session broker with the session gateway; the remote site
("region") is a second embedded broker with its own home and gateway, which reaches the
league's gateway through a LinkProxy (the site link that tests cut): the ``federated_sites``
world of tests/support/federation.py, shared with the other modules that use it. This module
shares its own topic into it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from dataplane.webhooks import SIGNATURE_HEADER, verify
from exchange.client import ApiError, ExchangeClient
from exchange.federation.sites import Federation, state_topic
from exchange.kafka.broker import pid_alive
from exchange.kafka.client import KafkaAdapter
from exchange.kafka.port import InRecord
from exchange.kafka.security import KafkaSecurity
from tests.e2e.test_webhooks import Receiver
from tests.support.federation import ROOT, TwoSites, read_all, remote_page, wait_topic
from tests.support.gateway import ThreadGateway
from tests.support.kafka import security_for
from tests.support.scenario import Scenario, build, person

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@dataclass
class Shared:
    """This module's topic in the two-site world: shared by the league, read at the region by
    a department under an agreement for ``name`` and ``citizen_id``."""

    world: TwoSites
    scenario: Scenario
    grant: dict[str, Any]
    reader: ExchangeClient  # a subscriber of the region department
    agreement: str


@pytest.fixture(scope="module")
def sites(
    federated_sites: TwoSites, admin: ExchangeClient, gateway: ThreadGateway
) -> Iterator[Shared]:
    s = build(admin, gateway.url)
    try:
        grant = federated_sites.share(s.topic)
        reader, agreement = federated_sites.region_department(s, ["name", "citizen_id"])
        yield Shared(federated_sites, s, grant, reader, agreement)
        reader.close()
    finally:
        s.close()


def by_partition(records: list[InRecord]) -> dict[int, list[tuple[bytes | None, bytes]]]:
    out: dict[int, list[tuple[bytes | None, bytes]]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out.setdefault(r.partition, []).append((r.key, r.value))
    return out


def remote_read(sites: Shared) -> dict[str, dict[str, Any]]:
    """Every mirrored record the region serves, by key (partition by partition)."""
    out: dict[str, dict[str, Any]] = {}
    partition, partitions = 0, 1
    while partition < partitions:
        body = remote_page(sites.reader, sites.scenario.topic, partition, 0)
        partitions = max(1, body["partitions"])
        for r in body["records"]:
            out[r["key"] if "key" in r else f"@{r['partition']}/{r['offset']}"] = r
        partition += 1
    return out


def remote_until(
    sites: Shared, key: str, ok: Any, timeout: float = 60
) -> tuple[float, dict[str, Any]]:
    """Read until the record ``key`` is there and ``ok(record)``; seconds taken, record."""
    start = time.monotonic()
    while True:
        got = remote_read(sites).get(key)
        if got is not None and ok(got):
            return time.monotonic() - start, got
        assert time.monotonic() - start < timeout, got
        time.sleep(0.2)


def test_a_shared_topic_arrives_at_the_region_byte_for_byte_and_sealed(sites: Shared) -> None:
    s = sites.scenario
    people = [person(i) for i in range(20)]
    s.publisher.publish(s.topic, [{"key": f"k{i}", "value": p} for i, p in enumerate(people)])
    league_sec = security_for(sites.world.league_bootstrap)
    wait_topic(sites.world.region_bootstrap, sites.world.region_security, s.topic)
    remote = read_all(sites.world.region_bootstrap, sites.world.region_security, s.topic, 20)
    local = read_all(sites.world.league_bootstrap, league_sec, s.topic, 20)
    assert len(remote) == 20
    # per partition, the same bytes in the same order (offsets differ: no markers there)
    assert by_partition(remote) == by_partition(local)
    raw = b"".join(r.value for r in remote)
    for p in people:  # sealed fields are ciphertext on the remote cluster
        assert p["citizen_id"].encode() not in raw
        assert p["phone"].encode() not in raw
    assert people[0]["name"].encode() in raw  # public fields are plain Avro: the check can fail


def test_status_shows_running_and_lag_drains_to_zero(sites: Shared) -> None:
    deadline = time.monotonic() + 180  # each `status` is a CLI run: slow on a loaded machine
    while True:
        st = sites.world.status()
        lags = {t["topic"]: t["lag"] for t in st["topics"]}  # every topic the region mirrors
        if st["state"] == "running" and lags == dict.fromkeys(sites.world.shared, 0):
            break
        assert time.monotonic() < deadline, st
        time.sleep(1)
    [mine] = [t for t in st["topics"] if t["topic"] == sites.scenario.topic]
    assert mine["from"] == "league"


def test_the_mirror_user_reads_only_the_shared_topics(sites: Shared) -> None:
    g = sites.grant
    mirror = KafkaSecurity(
        "SASL_PLAINTEXT", "SCRAM-SHA-512", g["username"], SecretStr(g["password"])
    )
    adapter = KafkaAdapter(
        sites.world.league_bootstrap, client_id="test-mirror-user", security=mirror
    )
    try:
        visible = adapter.list_topics()
    finally:
        adapter.close()
    assert sites.scenario.topic in visible
    # only what was shared to it, and the league's state topic for the region
    assert set(visible) == {*sites.world.shared, state_topic("league", "region")}, visible


def test_a_killed_mirrormaker_is_restarted_and_replication_resumes(sites: Shared) -> None:
    before = sites.world.status()
    assert before["state"] == "running" and before["mm2_pid"]
    os.kill(before["mm2_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 180
    while True:
        st = sites.world.status()
        if st["restarts"] >= before["restarts"] + 1 and st["state"] == "running":
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.5)
    assert st["mm2_pid"] != before["mm2_pid"] and pid_alive(st["mm2_pid"])
    s = sites.scenario
    s.publisher.publish(s.topic, [{"key": "after", "value": person(99)}])
    remote = read_all(sites.world.region_bootstrap, sites.world.region_security, s.topic, 21)
    assert b"after" in {r.key for r in remote}


def test_the_share_is_audited_at_both_sites(sites: Shared) -> None:
    league = audit_types(sites.world.league_home)
    region = audit_types(sites.world.region_home)
    assert {"federation.site_initialised", "federation.site_added", "federation.shared"} <= league
    assert {"federation.site_initialised", "federation.site_added", "federation.accepted"} <= region


def audit_types(home: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(home / "audit.db") as db:
        rows = db.execute("select type from audit_events").fetchall()
    return {str(r[0]) for r in rows}


# -- keys and policy stay with the owner ----------------------------------------------------
def test_a_region_subscriber_gets_only_the_fields_the_owner_grants(sites: Shared) -> None:
    s = sites.scenario
    s.publisher.publish(s.topic, [{"key": f"g{i}", "value": person(100 + i)} for i in range(3)])
    for i in range(3):
        _, r = remote_until(sites, f"g{i}", lambda r: True)
        p, v = person(100 + i), r["value"]
        # the granted sealed field opened with the key the owner released, the granted
        # unsealed one as is, and nothing the replicated agreement does not grant (district
        # and address.city are not sealed, yet not granted on a conditional topic)
        assert v == {"citizen_id": p["citizen_id"], "name": p["name"]}
        assert r["withheld"]["phone"] == "not_granted"
        assert r["withheld"]["income"] == "not_granted"
    assert "federation.keys_released" in audit_types(sites.world.league_home)
    assert "records.delivered" in audit_types(sites.world.region_home)


def test_the_owner_unreachable_withholds_sealed_fields_and_public_ones_flow(
    sites: Shared,
) -> None:
    s = sites.scenario
    sites.world.link.cut()
    try:
        s.publisher.publish(s.topic, [{"key": "cut", "value": person(200)}])
        _, during = remote_until(sites, "cut", lambda r: "citizen_id" not in r["value"])
        assert during["value"]["name"] == person(200)["name"]  # public fields keep flowing
        assert during["withheld"]["citizen_id"] == "owner_unreachable"
        assert during["withheld"]["phone"] == "not_granted"  # per the replicated agreement
    finally:
        sites.world.link.restore()
    _, after = remote_until(sites, "cut", lambda r: r["value"].get("citizen_id") is not None)
    assert after["value"]["citizen_id"] == person(200)["citizen_id"]
    assert "citizen_id" not in after["withheld"]


# -- replicated catalog and agreement state; remote subscriptions ---------------------------
def test_the_replicated_catalog_is_visible_and_read_only_at_the_region(sites: Shared) -> None:
    topic = sites.scenario.topic
    deadline = time.monotonic() + 60
    while True:  # the owner's gateway writes it, MirrorMaker copies it
        listed = {e["topic"]: e for e in sites.reader.call("GET", "/v1/catalog")}
        if topic in listed and listed[topic]["agreements"]:
            break
        assert time.monotonic() < deadline, listed
        time.sleep(0.3)
    entry = listed[topic]
    assert entry["site"] == "league" and entry["owner"] == sites.scenario.owner
    assert entry["share_type"] == "conditional" and entry["state_as_of"]  # owner's heartbeat
    classes = {f["path"]: f["classification"] for f in entry["fields"]}
    assert classes["citizen_id"] == "sensitive" and classes["name"] == "public"
    [ag] = entry["agreements"]  # only our department's, as the owner replicated it
    assert ag["id"] == sites.agreement and ag["status"] == "approved"
    assert sorted(ag["granted_fields"]) == ["citizen_id", "name"]
    one = sites.reader.call("GET", f"/v1/catalog/{topic}")
    assert one["site"] == "league" and one["agreements"] == entry["agreements"]
    # read-only here: the owner site decides
    with sites.world.region_gateway.admin() as admin:
        created = admin.request(
            "POST",
            "/v1/topics",
            json={"name": topic, "owner": sites.scenario.owner, "value_subject": "x-value"},
        )
    asked = sites.reader.request(
        "POST",
        "/v1/agreements",
        json={
            "topic": topic,
            "fields": ["name"],
            "purpose": "p",
            "valid_from": "2020-01-01T00:00:00Z",
            "valid_until": "2099-01-01T00:00:00Z",
        },
    )
    for r in (created, asked):
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "mirrored_read_only"
        assert "mirrored from site league and read-only here" in r.json()["detail"]


def test_a_narrowed_agreement_reaches_a_remote_subscription_pull_sse_and_webhook(
    sites: Shared,
) -> None:
    """A second region department granted only ``name``: the ordinary subscription API at the
    region (long-poll with commit, SSE resumed from a cursor, a signed webhook) delivers that
    field only."""
    s = sites.scenario
    reader, _ = sites.world.region_department(s, ["name"], name="rstats")
    deadline = time.monotonic() + 60
    while True:  # until the approved agreement has been replicated here
        try:
            sub = reader.subscribe(s.topic)
            break
        except ApiError as exc:
            assert exc.status == 403 and time.monotonic() < deadline, exc.body
            time.sleep(0.3)
    rx = Receiver()
    hook = reader.call(
        "POST", "/v1/subscriptions", json={"topic": s.topic, "webhook": {"url": rx.url}}
    )
    s.publisher.publish(s.topic, [{"key": f"n{i}", "value": person(400 + i)} for i in range(3)])
    got: dict[str, Any] = {}
    cursor = ""
    deadline = time.monotonic() + 60
    while not {"n0", "n1", "n2"} <= set(got):
        page = reader.poll(sub, wait_ms=2000)
        got |= {r["key"]: r for r in page["records"]}
        cursor = page["cursor"]
        assert time.monotonic() < deadline, got.keys()
    for i in range(3):  # sealed (citizen_id) and unsealed (district, address) alike: name only
        assert got[f"n{i}"]["value"] == {"name": person(400 + i)["name"]}
    reader.commit(sub, cursor)
    assert reader.poll(sub, wait_ms=0)["records"] == []  # resumed after the commit

    s.publisher.publish(s.topic, [{"key": "n3", "value": person(403)}])
    events: list[dict[str, Any]] = []
    for ev in reader.stream(sub, last_event_id=cursor, timeout=60):
        events.append(ev)
        if ev["event"] == "record" and ev["data"]["key"] == "n3":
            break
    keys = [e["data"]["key"] for e in events if e["event"] == "record"]
    assert "n0" not in keys and keys[-1] == "n3"  # from the cursor on, not from the start
    assert events[-1]["data"]["value"] == {"name": person(403)["name"]}

    def hooked() -> dict[str, Any]:
        pages = [json.loads(body) for _, body in rx.calls]
        return {r["key"]: r for p in pages for r in p["records"]}

    deadline = time.monotonic() + 60
    while not {"n0", "n1", "n2", "n3"} <= set(hooked()):  # the webhook, signed, same fields
        assert time.monotonic() < deadline, sorted(hooked())
        time.sleep(0.2)
    assert verify(hook["webhook_secret"], rx.calls[0][1], rx.calls[0][0][SIGNATURE_HEADER])
    assert hooked()["n3"]["value"] == {"name": person(403)["name"]}
    rx.close()
    reader.close()


def test_bad_remote_requests_are_clear_4xx(sites: Shared) -> None:
    unknown = sites.reader.request("GET", "/v1/federation/topics/nosuch.topic/records")
    assert unknown.status_code == 404 and "not mirrored" in unknown.json()["detail"]
    not_shared = sites.reader.request("POST", "/v1/subscriptions", json={"topic": "nosuch.topic"})
    assert not_shared.status_code == 403
    assert sites.reader.request("GET", "/v1/catalog/nosuch.topic").status_code == 404
    region = sites.world.region_home
    bad = run_cli(region, "federation", "link", "x", "--site", "nosuch", "--client-id", "c")
    assert bad.returncode != 0 and "unknown site 'nosuch'" in bad.stdout + bad.stderr


def test_a_revocation_at_the_owner_stops_remote_sealed_fields_within_5s(
    sites: Shared,
) -> None:
    """Sealed fields through the owner's key release, unsealed ones through the replicated
    agreement state: both stop within 5 s (the whole record is then withheld)."""
    s = sites.scenario
    s.publisher.publish(s.topic, [{"key": "rev", "value": person(300)}])
    _, before = remote_until(sites, "rev", lambda r: r["value"].get("citizen_id") is not None)
    at = f"@{before['partition']}/{before['offset']}"
    revoked = time.monotonic()
    s.steward.call(
        "POST", f"/v1/agreements/{sites.agreement}/revoke", json={"reason": "purpose ended"}
    )
    _, got = remote_until(sites, at, lambda r: True, timeout=30)
    assert time.monotonic() - revoked < 5.0
    assert got["withheld_record"] == "no_agreement"
    assert "value" not in got


# -- cross-site witnessing ------------------------------------------------------------------
def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=base | {"EXCHANGE_HOME": str(home), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_home(src: Path, dst: Path) -> None:
    """A consistent copy of a live home's databases and files (not its broker data)."""
    import shutil
    import sqlite3

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("kafka", "*.db", "*.db-*"))
    for name in ("exchange.db", "audit.db"):
        with sqlite3.connect(src / name) as a, sqlite3.connect(dst / name) as b:
            a.backup(b)


def truncate_log(home: Path, keep: int) -> None:
    """What an operator holding the site's own keys could do: cut the log's tail and every
    checkpoint past it, so that what is left is consistent with itself."""
    import sqlite3

    with sqlite3.connect(home / "audit.db") as db:
        row = db.execute("select leaf_hash from audit_events where idx = ?", (keep - 1,))
        (last,) = row.fetchone()
        db.execute("delete from audit_events where idx >= ?", (keep,))
        db.execute("delete from audit_subjects where idx >= ?", (keep,))
        db.execute("delete from audit_checkpoints where size > ?", (keep,))
        db.execute("update audit_head set size = ?, last_hash = ?", (keep, bytes(last).hex()))


def sign_checkpoint(home: Path) -> None:
    """Sign a checkpoint of a home's log offline, with the home's own key."""
    from audit.factory import open_audit
    from exchange.db import make_engine, session_factory
    from exchange.settings import Settings

    settings = Settings(home=home)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        open_audit(settings, session_factory(engine), None, announce=False).service.checkpoint()
    finally:
        engine.dispose()


def witnesses(home: Path) -> dict[str, Any]:
    league: dict[str, Any] = Federation(home).witnesses().get("league", {})
    return league


def until(check: Any, timeout: float = 90.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, what or got
        time.sleep(0.2)


def audit_rows(home: Path, kind: str) -> list[dict[str, Any]]:
    import sqlite3

    with sqlite3.connect(home / "audit.db") as db:
        rows = db.execute("select entry from audit_events where type = ?", (kind,)).fetchall()
    return [json.loads(bytes(r[0]) if not isinstance(r[0], str) else r[0]) for r in rows]


def test_the_league_witnesses_the_regions_log_on_a_schedule(sites: Shared) -> None:
    """No CLI step: the region's gateway sends its checkpoints, the league cosigns them, and
    a later bigger checkpoint comes with a consistency proof the league checks."""
    from prometheus_client import REGISTRY

    from audit.witnessing import checked_notes

    first = until(lambda: witnesses(sites.world.region_home).get("size"), what="never cosigned")
    later = until(lambda: (w := witnesses(sites.world.region_home).get("size", 0)) > first and w)
    assert Federation(sites.world.league_home).witnessed()["region"]["size"] >= later
    kept = checked_notes(Federation(sites.world.region_home))
    assert kept and kept[-1].by == ("league",) and kept[-1].size >= later
    assert audit_rows(sites.world.league_home, "federation.witnessed")
    assert audit_rows(sites.world.region_home, "federation.cosigned")
    st = sites.world.status()["witnesses"]
    assert [(w["site"], w["error"]) for w in st] == [("league", None)]
    assert st[0]["seconds_ago"] is not None and st[0]["seconds_ago"] < 60
    age = REGISTRY.get_sample_value("exchange_witness_cosignature_age_seconds", {"site": "league"})
    assert age is not None and 0 <= age < 60


def test_an_unreachable_witness_is_retried_and_shown(sites: Shared) -> None:
    until(lambda: witnesses(sites.world.region_home).get("at_epoch"))
    sites.world.link.cut()
    try:
        down = until(
            lambda: (w := witnesses(sites.world.region_home)).get("failures", 0) >= 2 and w
        )
        assert "unreachable" in down["error"]
        shown = sites.world.status()["witnesses"][0]
        assert shown["failures"] >= 2 and "unreachable" in shown["error"]
    finally:
        sites.world.link.restore()
    back = until(lambda: (w := witnesses(sites.world.region_home)).get("failures") == 0 and w)
    assert back["at_epoch"] > down["at_epoch"] and back["error"] is None


def offer(sites: Shared, note: str, old: int, proof: list[str]) -> tuple[int, Any]:
    from exchange.federation.sitecall import SiteCaller

    caller = SiteCaller("region", Federation(sites.world.region_home).private_key())
    try:
        body = json.dumps({"checkpoint": note, "old_size": old, "proof": proof}).encode()
        return caller.post(sites.world.link.url(), "league", "/v1/federation/witness", body)
    finally:
        caller.close()


def region_signed(sites: Shared, size: int, root: bytes) -> str:
    from audit.checkpoint import Checkpoint
    from audit.keys import load_signer
    from audit.settings import AuditSettings

    signer = load_signer(sites.world.region_home, AuditSettings(), create=False)
    return signer.sign(Checkpoint(AuditSettings().origin, size, root))


def test_a_rollback_or_a_fork_offered_to_the_witness_is_refused_and_audited(
    sites: Shared,
) -> None:
    import base64

    from audit.witness import proof_length

    league = Federation(sites.world.league_home)
    until(lambda: league.witnessed().get("region"))

    def refused(make: Any) -> dict[str, Any]:
        for _ in range(20):  # the region's own witnessing moves the league's size meanwhile
            size = int(league.witnessed()["region"]["size"])
            status, answer = offer(sites, *make(size))
            if answer.get("code") != "witness_size_mismatch":
                assert status == 409, answer
                return dict(answer)
        raise AssertionError("the witness's size kept moving")

    rollback = refused(lambda m: (region_signed(sites, m - 1, b"\x01" * 32), m, []))
    assert rollback["code"] == "witness_refused" and "rollback" in rollback["detail"]
    fork = refused(lambda m: (region_signed(sites, m, b"\x02" * 32), m, []))
    assert "fork" in fork["detail"]
    junk = base64.b64encode(b"\x03" * 32).decode()
    forged = refused(
        lambda m: (region_signed(sites, m + 7, b"\x04" * 32), m, [junk] * proof_length(m, m + 7))
    )
    assert "consistency proof fails" in forged["detail"]
    status, garbage = offer(sites, region_signed(sites, 10**6, b"\x05" * 32), 3, ["%%%"])
    assert status == 422 and "not base64" in garbage["detail"]
    alarms = [e["data"] for e in audit_rows(sites.world.league_home, "federation.witness_refused")]
    assert sum(a["alarm"] for a in alarms) >= 3 and all(a["site"] == "region" for a in alarms)
    assert any("rollback" in a["reason"] for a in alarms)
    assert any(not a["alarm"] and a["code"] == "bad_checkpoint" for a in alarms)
    # a client of the league, or nobody, cannot ask: the route is for sites
    assert httpx.post(f"{sites.world.link.url()}/v1/federation/witness", json={}).status_code == 401


def test_a_history_rewritten_at_one_site_is_caught_by_the_other_sites_witness(
    sites: Shared, tmp_path: Path
) -> None:
    region = sites.world.region_home
    until(lambda: witnesses(region).get("size", 0) > 10)
    url = sites.world.region_gateway.url
    sites.world.link.cut()  # no new cosignatures meanwhile: the kept notes stay as they are
    time.sleep(0.5)  # a round under way when the link went down has ended
    try:  # meanwhile, the hand-over path: request (with its proof), cosign, keep
        req, cosigned = tmp_path / "witness.req", tmp_path / "cosigned.note"
        assert "proof from size" in sites.world.region("witness-request", "--to", "league",
                                                 "--out", str(req))  # fmt: skip
        assert req.read_text().startswith("old ")
        sites.world.league("witness", str(req), "--site", "region", "--out", str(cosigned))
        assert "witnessed by league" in sites.world.region("witnessed", "add", str(cosigned))
    except BaseException:
        sites.world.link.restore()
        raise
    (path, note), *_ = reversed(Federation(region).cosigned_notes())
    assert note == cosigned.read_text()
    size = int(note.split("\n")[1])
    try:
        ok = run_cli(region, "audit", "verify", "--offline")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "witnessed by league up to size" in ok.stdout
        online = run_cli(region, "audit", "verify", "--url", url)
        assert online.returncode == 0, online.stdout + online.stderr
        assert "witnessed by league up to size" in online.stdout

        # offline: the tail cut and the log re-signed with the site's own key
        rogue = tmp_path / "rogue"
        copy_home(region, rogue)
        truncate_log(rogue, size - 3)
        sign_checkpoint(rogue)  # re-signed with the site's own key
        hidden = rogue.parent / "kept-aside"
        (rogue / "federation" / "cosigned").rename(hidden)
        alone = run_cli(rogue, "audit", "verify", "--offline")
        assert alone.returncode == 0, alone.stdout + alone.stderr  # invisible without a witness
        hidden.rename(rogue / "federation" / "cosigned")
        caught = run_cli(rogue, "audit", "verify", "--offline")
        assert caught.returncode == 1
        assert "TAMPERED" in caught.stderr and "cosigned by league" in caught.stderr

        # online: a log that contradicts what the league cosigned at `size` (the kept note
        # stands for the league's memory; the region's log no longer has that root there)
        from audit.witness import add_line, cosign

        league_key = Federation(sites.world.league_home).private_key()
        other = region_signed(sites, size, b"\x06" * 32)
        path.write_text(add_line(other, cosign(other, "league", league_key, int(time.time()))))
        contradicted = run_cli(region, "audit", "verify", "--url", url)
        assert contradicted.returncode == 1, contradicted.stdout
        assert "TAMPERED" in contradicted.stderr and "cosigned by league" in contradicted.stderr
        # a kept note whose witness signature no longer verifies
        path.write_text(note.replace("\n\u2014 league ", "\n\u2014 league A", 1))
        for args in (("--offline",), ("--url", url)):
            bad = run_cli(region, "audit", "verify", *args)
            assert bad.returncode == 1 and "TAMPERED: no valid witness signature" in bad.stderr
    finally:
        path.write_text(note)
        sites.world.link.restore()
