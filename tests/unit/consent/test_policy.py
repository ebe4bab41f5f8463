"""The policy decision, rule by rule, exhaustively over one field, and as a property."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.domain import (
    NOT_REQUIRED,
    OPEN_CLASSES,
    CatalogEntry,
    ConsentRef,
    ConsentStatus,
    Grant,
    NotRequired,
)
from consent.policy import Decision, decide
from tests.unit.consent.conftest import DAY, NOW, F, consent_ref, entry, grant

SCHEMA = [F("id", "sensitive", True), F("city", "public"), F("visits", "internal"),
          F("diagnosis", "sensitive"), F("hiv", "secret")]  # fmt: skip


def run(
    e: CatalogEntry,
    g: Grant | None,
    *,
    requested: set[str] | None = None,
    consent: ConsentRef | NotRequired | None = NOT_REQUIRED,
    fields: list[F] = SCHEMA,
    consumer: str = "police",
    now: datetime = NOW,
) -> Decision:
    return decide(
        consumer_dept=consumer,
        entry=e,
        grant=g,
        fields=fields,
        requested=requested,
        subject_consent=consent,
        now=now,
    )


# -- rule by rule ------------------------------------------------------------------------
def test_not_shared_gives_nothing_even_with_a_grant() -> None:
    d = run(entry("not_shared"), grant({"city", "id"}))
    assert d == Decision(frozenset(), True, "not_shared")


def test_unconditional_without_agreement_gives_public_and_internal_only() -> None:
    d = run(entry("unconditional"), None)
    assert d.allowed == {"city", "visits"} and not d.withhold


def test_unconditional_sensitive_only_when_named_by_a_grant() -> None:
    d = run(entry("unconditional"), grant({"diagnosis"}))
    assert d.allowed == {"city", "visits", "diagnosis"}


def test_conditional_without_grant_gives_nothing() -> None:
    assert run(entry("conditional"), None) == Decision(frozenset(), True, "no_agreement")


def test_conditional_gives_exactly_the_granted_fields() -> None:
    assert run(entry("conditional"), grant({"city", "hiv"})).allowed == {"city", "hiv"}


def test_granted_fields_missing_from_the_schema_are_not_delivered() -> None:
    assert run(entry("conditional"), grant({"city", "ghost"})).allowed == {"city"}


@pytest.mark.parametrize(
    "g",
    [
        grant({"city"}, until=NOW),  # expired (valid_until is exclusive)
        grant({"city"}, start=NOW + DAY, until=NOW + 2 * DAY),  # not yet valid
        grant({"city"}, consumer="tax"),  # someone else's
        grant({"city"}, topic="health.other"),  # another topic
    ],
)
def test_a_grant_that_does_not_apply_counts_as_none(g: Grant) -> None:
    assert run(entry("conditional"), g).reason == "no_agreement"
    assert run(entry("unconditional"), g).allowed == {"city", "visits"}


def test_requested_fields_narrow() -> None:
    d = run(entry("conditional"), grant({"city", "hiv"}), requested={"hiv", "visits"})
    assert d.allowed == {"hiv"}


def test_nothing_left_after_narrowing_withholds() -> None:
    d = run(entry("conditional"), grant({"city"}), requested={"hiv"})
    assert d == Decision(frozenset(), True, "no_fields")


@pytest.mark.parametrize(
    "c",
    [
        None,
        consent_ref(status=ConsentStatus.REVOKED),
        consent_ref(status=ConsentStatus.PAUSED),
        consent_ref(until=NOW),
        consent_ref(start=NOW + DAY, until=NOW + 2 * DAY),
        consent_ref(consumer="tax"),
        consent_ref(topic="health.other"),
    ],
)
def test_required_consent_missing_or_inactive_withholds_the_record(
    c: ConsentRef | NotRequired | None,
) -> None:
    d = run(entry("conditional"), grant({"city", "diagnosis"}, consent=True), consent=c)
    assert d == Decision(frozenset(), True, "no_subject_consent")


def test_not_required_skips_the_consent_rule_for_subscription_level_checks() -> None:
    g = grant({"city"}, consent=True)
    assert run(entry("conditional"), g, consent=NOT_REQUIRED).allowed == {"city"}


def test_an_active_consent_listing_fields_narrows() -> None:
    g = grant({"city", "diagnosis", "hiv"}, consent=True)
    d = run(entry("conditional"), g, consent=consent_ref({"diagnosis", "visits"}))
    assert d.allowed == {"diagnosis"}


def test_an_active_consent_without_fields_keeps_the_grant() -> None:
    g = grant({"city", "diagnosis"}, consent=True)
    assert run(entry("conditional"), g, consent=consent_ref()).allowed == {"city", "diagnosis"}


def test_consent_is_ignored_when_the_grant_does_not_require_it() -> None:
    g = grant({"city"})
    revoked = consent_ref(status=ConsentStatus.REVOKED)
    assert run(entry("conditional"), g, consent=revoked).allowed == {"city"}


def test_unknown_classification_is_treated_as_secret() -> None:
    fields = [F("odd", "confidential"), F("city", "public")]
    assert run(entry("unconditional"), None, fields=fields).allowed == {"city"}


def test_owner_department_has_no_implicit_rights() -> None:
    assert run(entry("conditional"), None, consumer="health").reason == "no_agreement"


# -- exhaustive over one field -----------------------------------------------------------
GRANTS = {
    "none": None,
    "names": grant({"x"}),
    "names_needs_consent": grant({"x"}, consent=True),
    "other": grant({"y"}),
    "other_needs_consent": grant({"y"}, consent=True),
    "expired": grant({"x"}, until=NOW - DAY),
    "foreign": grant({"x"}, consumer="tax"),
}
CONSENTS = {
    "not_required": NOT_REQUIRED,
    "none": None,
    "active": consent_ref(),
    "active_x": consent_ref({"x"}),
    "active_y": consent_ref({"y"}),
    "revoked": consent_ref(status=ConsentStatus.REVOKED),
    "expired": consent_ref(until=NOW - DAY),
}


@pytest.mark.parametrize(
    ("share", "cls", "g", "req", "c"),
    list(
        itertools.product(
            ["unconditional", "conditional", "not_shared"],
            ["public", "internal", "sensitive", "secret"],
            GRANTS,
            ["all", "x", "y"],
            CONSENTS,
        )
    ),
)
def test_every_combination_for_one_field(share: str, cls: str, g: str, req: str, c: str) -> None:
    d = run(
        entry(share),  # type: ignore[arg-type]
        GRANTS[g],
        fields=[F("x", cls)],
        requested=None if req == "all" else {req},
        consent=CONSENTS[c],
    )
    grant_valid = g in ("names", "names_needs_consent", "other", "other_needs_consent")
    grant_names_x = g in ("names", "names_needs_consent")
    needs_consent = g.endswith("needs_consent")
    consent_ok = c in ("active", "active_x", "not_required")
    expected = (
        share != "not_shared"
        and req in ("all", "x")
        and (grant_names_x or (share == "unconditional" and cls in ("public", "internal")))
        and (share == "unconditional" or grant_valid)
        and (not needs_consent or consent_ok)
    )
    assert ("x" in d.allowed) is expected
    assert d.withhold is (not d.allowed)


# -- property ----------------------------------------------------------------------------
CLASSES = ["public", "internal", "sensitive", "secret", "unknown"]
PATHS = ["a", "b", "c", "d", "e"]
paths = st.frozensets(st.sampled_from(PATHS))
times = st.integers(-3, 3).map(lambda n: NOW + n * DAY)


@st.composite
def grants(draw: st.DrawFn) -> Grant | None:
    if draw(st.booleans()):
        return None
    start = draw(times)
    return grant(
        set(draw(paths)),
        consumer=draw(st.sampled_from(["police", "tax"])),
        topic=draw(st.sampled_from(["health.visits", "health.other"])),
        consent=draw(st.booleans()),
        start=start,
        until=start + draw(st.integers(0, 4)) * DAY,
    )


@st.composite
def consents(draw: st.DrawFn) -> ConsentRef | NotRequired | None:
    kind = draw(st.sampled_from(["none", "not_required", "ref"]))
    if kind != "ref":
        return None if kind == "none" else NOT_REQUIRED
    start = draw(times)
    return consent_ref(
        set(draw(paths)),
        consumer=draw(st.sampled_from(["police", "tax"])),
        topic=draw(st.sampled_from(["health.visits", "health.other"])),
        status=draw(st.sampled_from(list(ConsentStatus))),
        start=start,
        until=start + draw(st.integers(0, 4)) * DAY,
    )


schemas = st.lists(
    st.builds(F, st.sampled_from(PATHS), st.sampled_from(CLASSES)), unique_by=lambda f: f.path
)


@settings(max_examples=1500, deadline=None)
@given(
    share=st.sampled_from(["unconditional", "conditional", "not_shared"]),
    g=grants(),
    c=consents(),
    fields=schemas,
    requested=st.none() | paths,
    consumer=st.sampled_from(["police", "tax", "health"]),
    now=times,
)
def test_a_field_is_delivered_only_if_every_rule_allows_it(
    share: str,
    g: Grant | None,
    c: ConsentRef | NotRequired | None,
    fields: list[F],
    requested: frozenset[str] | None,
    consumer: str,
    now: datetime,
) -> None:
    e = entry(share)  # type: ignore[arg-type]
    d = decide(
        consumer_dept=consumer,
        entry=e,
        grant=g,
        fields=fields,
        requested=requested,
        subject_consent=c,
        now=now,
    )
    live = g is not None and g.consumer == consumer and g.topic == e.topic and g.valid_at(now)
    consent_live = (
        isinstance(c, ConsentRef)
        and c.consumer == consumer
        and c.topic == e.topic
        and c.status is ConsentStatus.ACTIVE
        and c.valid_from <= now < c.valid_until
    )
    classes = {f.path: f.classification for f in fields}
    rules = {
        "shared": lambda p: share != "not_shared",
        "in_schema": lambda p: p in classes,
        "requested": lambda p: requested is None or p in requested,
        "conditional_needs_grant": lambda p: share == "unconditional" or live,
        "closed_fields_only_if_named": lambda p: (
            (classes.get(p) in OPEN_CLASSES and share == "unconditional")
            or (live and g is not None and p in g.fields)
        ),
        "consent": lambda p: (
            not (live and g is not None and g.requires_subject_consent)
            or c is NOT_REQUIRED  # subscription-level check: consent is looked at per record
            or (consent_live and (not c.fields or p in c.fields))
        ),  # type: ignore[union-attr]
    }
    for p in d.allowed:
        broken = [name for name, ok in rules.items() if not ok(p)]
        assert not broken, f"{p} delivered although {broken} forbid it"
    # and nothing is withheld that every rule allows (the decision is not needlessly strict)
    for p in set(PATHS) - d.allowed:
        assert not all(ok(p) for ok in rules.values()), f"{p} allowed by all rules but withheld"
    assert d.withhold is (not d.allowed)


@settings(max_examples=300, deadline=None)
@given(share=st.sampled_from(["unconditional", "conditional"]), g=grants(), fields=schemas)
def test_losing_the_grant_never_adds_fields(share: str, g: Grant | None, fields: list[F]) -> None:
    e = entry(share)  # type: ignore[arg-type]
    with_grant = run(e, g, fields=fields, consent=consent_ref())
    without = run(e, None, fields=fields, consent=consent_ref())
    if g is None or not g.requires_subject_consent:
        assert without.allowed <= with_grant.allowed
