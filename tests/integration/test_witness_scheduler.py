"""Scheduled witnessing (audit.cosigning.WitnessScheduler) over real SQLite audit logs.

The region's log is a real index-only audit log; the league is a real witness home. The HTTP
hop between them is replaced by a direct call of the witness's use case (the route itself,
with its site assertion, is exercised in tests/integration/test_federation.py), so that an
answer lost on the way can be simulated exactly.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from audit.cosigning import WitnessScheduler, answer_request
from audit.factory import Audit, open_audit
from audit.witnessing import checked_notes
from exchange.auditing import AuditRecord, MemoryAuditSink
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import DependencyUnavailable, ExchangeError
from exchange.federation.sites import Federation
from exchange.settings import Settings
from gateway.problem import status_for


def index_only(home: Path) -> Audit:
    settings = Settings(home=home)
    home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    return open_audit(settings, session_factory(engine), None)


class Direct:
    """Stands in for SiteCaller: the league's use case, answered as the route would."""

    def __init__(self, league: Federation, sink: MemoryAuditSink) -> None:
        self.league, self.sink = league, sink
        self.lose_next = False

    def post(self, url: str, audience: str, path: str, body: bytes) -> tuple[int, Any]:
        req = json.loads(body)
        try:
            note = answer_request(
                self.league, self.sink, "region", req["checkpoint"], req["old_size"], req["proof"]
            )
        except ExchangeError as exc:
            return status_for(exc), {"code": exc.code, "detail": exc.message, **exc.details}
        if self.lose_next:
            self.lose_next = False
            raise DependencyUnavailable("site league at http://league is unreachable")
        return 200, {"note": note, "witness": "league"}

    def close(self) -> None:
        pass


@pytest.fixture
def world(tmp_path: Path) -> tuple[Audit, WitnessScheduler, Direct, Federation, Federation]:
    audit = index_only(tmp_path / "region")
    region, league = Federation(tmp_path / "region"), Federation(tmp_path / "league")
    rk, lk = region.init("region"), league.init("league")
    region.add_site("league", "http://league", lk)
    league.add_site("region", "http://region", rk, audit.service.signer.verifier.encode())
    direct = Direct(league, MemoryAuditSink())
    scheduler = WitnessScheduler(audit.service, region, audit.log, 60, caller=lambda _: direct)
    return audit, scheduler, direct, region, league


def grow(audit: Audit, n: int) -> None:
    for i in range(n):
        audit.log.append(AuditRecord("records.delivered", actor="c", data={"i": i}))


def types(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "audit.db") as db:
        rows = db.execute("select type, entry from audit_events order by idx").fetchall()
    return [json.loads(r[1]) for r in rows]


def test_rounds_prove_consistency_and_survive_a_lost_answer(
    world: tuple[Audit, WitnessScheduler, Direct, Federation, Federation],
) -> None:
    audit, scheduler, direct, region, league = world
    grow(audit, 5)
    (first,) = scheduler.run_once(force=True)
    assert first.ok and region.witnesses()["league"]["size"] == first.size
    grow(audit, 9)
    (second,) = scheduler.run_once(force=True)  # proven from the first size
    assert second.ok and second.size is not None and first.size is not None
    assert second.size > first.size
    grow(audit, 4)
    direct.lose_next = True  # the league cosigns, the answer never arrives
    (lost,) = scheduler.run_once(force=True)
    assert not lost.ok and "unreachable" in str(lost.error)
    assert region.witnesses()["league"]["failures"] == 1
    assert league.witnessed()["region"]["size"] > second.size  # the league moved on
    grow(audit, 3)
    (again,) = scheduler.run_once(force=True)  # 409 with the league's size, then from it
    assert again.ok and region.witnesses()["league"]["failures"] == 0
    kept = checked_notes(region)
    assert [(c.size, c.by) for c in kept] == [(again.size, ("league",))]  # older ones dropped
    seen = [(r.type, r.data.get("code")) for r in direct.sink.records]
    witnessed = ("federation.witnessed", None)
    mismatch = ("federation.witness_refused", "witness_size_mismatch")  # audited, no alarm
    assert seen == [witnessed, witnessed, witnessed, mismatch, witnessed]
    cosigned = [e for e in types(region.home) if e["type"] == "federation.cosigned"]
    assert [e["data"]["size"] for e in cosigned] == [first.size, second.size, again.size]


def test_a_rolled_back_log_is_refused_by_the_witness_and_audited_on_both_sides(
    world: tuple[Audit, WitnessScheduler, Direct, Federation, Federation],
) -> None:
    audit, scheduler, direct, region, _ = world
    grow(audit, 12)
    (ok,) = scheduler.run_once(force=True)
    assert ok.ok and ok.size is not None
    # the region's operator cuts the log's tail (and its checkpoints) and carries on
    with sqlite3.connect(region.home / "audit.db") as db:
        (last,) = db.execute("select leaf_hash from audit_events where idx = 5").fetchone()
        db.execute("delete from audit_events where idx > 5")
        db.execute("delete from audit_subjects where idx > 5")
        db.execute("delete from audit_checkpoints")
        db.execute("update audit_head set size = 6, last_hash = ?", (bytes(last).hex(),))
    rogue = index_only(region.home)  # a fresh process: no tree cached from before the cut
    scheduler.service = rogue.service
    (refused,) = scheduler.run_once(force=True)
    assert not refused.ok and "rollback" in str(refused.error)
    assert region.witnesses()["league"]["failures"] == 1
    (alarm,) = [r for r in direct.sink.records if r.type == "federation.witness_refused"]
    assert alarm.data["alarm"] is True and alarm.outcome == "denied"
    (ours,) = [e for e in types(region.home) if e["type"] == "federation.cosign_refused"]
    assert ours["data"]["alarm"] is True and ours["data"]["code"] == "witness_refused"
