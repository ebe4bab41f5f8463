"""The steward's views: fields with classifications, deadlines, inbox order, consumers today."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from consent.agreements import Agreement
from consent.domain import AgreementStatus
from consent.stewardship import UNKNOWN, consumers, inbox, view
from schemas.classification import Classification, FieldInfo

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SCHEMA = [
    FieldInfo("citizen_id", Classification.SENSITIVE, True, "string"),
    FieldInfo("name", Classification.PUBLIC, False, "string"),
    FieldInfo("income", Classification.SECRET, False, "double"),
    FieldInfo("address.city", Classification.PUBLIC, False, "string"),
]


def agreement(**kw: object) -> Agreement:
    base = Agreement(
        id="agr-1",
        topic="civil.residents",
        owner="civil",
        consumer="health",
        requested_by="health-app",
        fields=("citizen_id", "income", "name", "gone"),
        granted_fields=None,
        purpose="p",
        legal_basis=None,
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=30),
        requires_subject_consent=False,
        status=AgreementStatus.PENDING,
        reason=None,
        requested_at=NOW - timedelta(days=1),
        respond_by=NOW + timedelta(hours=5),
        decided_at=None,
        decided_by=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_fields_carry_their_classification() -> None:
    v = view(agreement(), SCHEMA, NOW)
    got = {f.path: (f.classification, f.data_subject) for f in v.fields}
    assert got == {
        "citizen_id": ("sensitive", True),
        "income": ("secret", False),
        "name": ("public", False),
        "gone": (UNKNOWN, False),  # not in the current schema: shown, ranked most sensitive
    }
    assert v.most_sensitive == UNKNOWN
    assert view(agreement(fields=("name", "citizen_id")), SCHEMA, NOW).most_sensitive == "sensitive"
    assert all(f.classification == UNKNOWN for f in view(agreement(), None, NOW).fields)


def test_deadline_and_inbox_order() -> None:
    soon = view(agreement(id="a", respond_by=NOW + timedelta(hours=1)), SCHEMA, NOW)
    late = view(agreement(id="b", respond_by=NOW - timedelta(days=2)), SCHEMA, NOW)
    later = view(agreement(id="c", respond_by=NOW + timedelta(days=3)), SCHEMA, NOW)
    done = view(agreement(id="d", status=AgreementStatus.APPROVED), SCHEMA, NOW)
    assert late.deadline and late.deadline.overdue and late.deadline.seconds_left < 0
    assert soon.deadline and not soon.deadline.overdue and soon.deadline.seconds_left == 3600
    assert done.deadline is None
    assert [v.agreement.id for v in inbox([later, done, soon, late])] == ["b", "a", "c"]


def test_consumers_today_are_approved_or_suspended_and_valid_now() -> None:
    granted = ("name",)
    rows = [
        agreement(id="on", status=AgreementStatus.APPROVED, granted_fields=granted),
        agreement(id="paused", status=AgreementStatus.SUSPENDED, consumer="a-dept"),
        agreement(id="future", status=AgreementStatus.APPROVED, valid_from=NOW + timedelta(1)),
        agreement(id="over", status=AgreementStatus.EXPIRED),
        agreement(id="no", status=AgreementStatus.REJECTED),
        agreement(id="ask", status=AgreementStatus.PENDING),
    ]
    got = consumers([view(a, SCHEMA, NOW) for a in rows], NOW)
    assert [v.agreement.id for v in got] == ["paused", "on"]
    on = got[1]
    assert [(f.path, f.granted) for f in on.fields if f.granted] == [("name", True)]
