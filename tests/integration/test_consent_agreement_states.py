"""Stateful property test: any sequence of agreement actions keeps the grant consistent."""

from __future__ import annotations

import functools
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy.orm import Session, sessionmaker

from consent.agreements import Agreements, AgreementStatus
from consent.catalog import Catalog, CatalogEntry
from consent.errors import InvalidTransition
from exchange.auditing import MemoryAuditSink
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import Conflict, ExchangeError
from exchange.identity.service import IdentityService
from exchange.identity.tokens import Principal

T0 = datetime(2026, 11, 25, 9, tzinfo=UTC)
TOPIC = "health.visits"
SUBSCRIBER = Principal("police-app", "police", frozenset({"subscriber"}), "j", "i", 0)
STEWARD = Principal("health-steward", "health", frozenset({"steward"}), "j", "i", 0)
STRANGER = Principal("tax-steward", "tax", frozenset({"steward"}), "j", "i", 0)
# What each action may start from, per the documented state machine.
FROM = {
    "approve": {AgreementStatus.PENDING},
    "reject": {AgreementStatus.PENDING},
    "suspend": {AgreementStatus.APPROVED},
    "resume": {AgreementStatus.SUSPENDED},
    "revoke": {AgreementStatus.APPROVED, AgreementStatus.SUSPENDED},
}


@functools.cache
def _sessions() -> sessionmaker[Session]:
    """One migrated database for all examples (each example uses its own topic)."""
    engine = make_engine(f"sqlite:///{Path(tempfile.mkdtemp(prefix='consent-states-'))}/cp.db")
    migrate(engine)
    sessions = session_factory(engine)
    for dept in ("health", "police", "tax"):
        IdentityService(sessions).create_department(dept, dept, "city")
    return sessions


class AgreementMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        audit = MemoryAuditSink()
        catalog = Catalog(_sessions(), audit)
        self.topic = f"{TOPIC}-{id(self):x}-{datetime.now().timestamp()}".replace(".", "-")
        catalog.create(
            CatalogEntry(self.topic, "health", "t", "", "daily", "conditional", "s", 1,
                         "AES256_GCM", None, T0)
        )  # fmt: skip
        self.agreements = Agreements(_sessions(), audit, catalog, clock=lambda: self.now)
        self.model: dict[str, AgreementStatus] = {}
        self.until: dict[str, datetime] = {}
        self.fields: dict[str, frozenset[str]] = {}

    def status(self, aid: str) -> AgreementStatus:
        st_ = self.model[aid]
        if st_ is AgreementStatus.APPROVED and self.now >= self.until[aid]:
            return AgreementStatus.EXPIRED
        return st_

    @rule(days=st.integers(1, 60), fields=st.sets(st.sampled_from("abc"), min_size=1))
    def request(self, days: int, fields: set[str]) -> None:
        # open = pending/approved/suspended with its window not yet over
        states = FROM["revoke"] | FROM["approve"]
        open_ = [a for a in self.model if self.model[a] in states and self.until[a] > self.now]
        try:
            a = self.agreements.request(
                SUBSCRIBER, topic=self.topic, fields=fields, purpose="p",
                valid_until=self.now + timedelta(days=days),
            )  # fmt: skip
        except Conflict:
            assert open_, "refused although no open agreement exists"
            return
        assert not open_, "a second open agreement was accepted"
        self.model[a.id] = AgreementStatus.PENDING
        self.until[a.id] = a.valid_until
        self.fields[a.id] = frozenset(fields)

    @precondition(lambda self: bool(self.model))
    @rule(
        data=st.data(),
        action=st.sampled_from(sorted(FROM)),
        narrow=st.none() | st.sets(st.sampled_from("abc"), min_size=1),
    )
    def act(self, data: st.DataObject, action: str, narrow: set[str] | None) -> None:
        aid = data.draw(st.sampled_from(sorted(self.model)))
        before = self.status(aid)
        try:
            if action == "approve":
                a = self.agreements.approve(aid, STEWARD, narrow)
            elif action == "reject":
                a = self.agreements.reject(aid, STEWARD, "no")
            else:
                a = getattr(self.agreements, action)(aid, STEWARD)
        except InvalidTransition:
            assert before not in FROM[action]
            return
        except ExchangeError as exc:  # narrowing outside the request
            assert action == "approve" and narrow and not narrow <= self.fields[aid], exc
            return
        assert before in FROM[action]
        after = {"approve": AgreementStatus.APPROVED, "reject": AgreementStatus.REJECTED,
                 "suspend": AgreementStatus.SUSPENDED, "resume": AgreementStatus.APPROVED,
                 "revoke": AgreementStatus.REVOKED}[action]  # fmt: skip
        self.model[aid] = after
        if action == "approve":
            self.fields[aid] = frozenset(narrow or self.fields[aid])
        assert a.status is self.status(aid)

    @rule(days=st.integers(1, 30))
    def time_passes(self, days: int) -> None:
        self.now += timedelta(days=days)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def strangers_see_nothing(self, data: st.DataObject) -> None:
        aid = data.draw(st.sampled_from(sorted(self.model)))
        try:
            self.agreements.approve(aid, STRANGER)
        except ExchangeError as exc:
            assert exc.code == "agreement_not_found"
        else:
            raise AssertionError("a stranger's steward changed an agreement")

    @invariant()
    def grant_iff_approved_and_valid(self) -> None:
        live = [a for a in self.model if self.status(a) is AgreementStatus.APPROVED]
        g = self.agreements.current_grant("police", self.topic, self.now)
        if not live:
            assert g is None
        else:
            assert g is not None and g.agreement_id in live
            assert g.fields == self.fields[g.agreement_id]
        assert self.agreements.current_grant("tax", self.topic, self.now) is None


AgreementMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=12, deadline=None
)
TestAgreementStates = AgreementMachine.TestCase
