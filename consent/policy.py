"""The policy decision: which fields of one record may go to one consumer department now.

Pure: no I/O, no clock; every delivery calls :func:`decide` with what the stores said.
A field is allowed only if *every* rule allows it:

1. share type ``not_shared`` → nothing.
2. A grant counts only if it is for this consumer and topic and ``valid_from <= now <
   valid_until`` (suspended/revoked agreements never become grants). A grant that does not
   count is the same as no grant.
3. ``conditional`` → only fields the grant names; no grant → nothing.
   ``unconditional`` → public/internal fields to anyone, plus the fields the grant names.
   Sensitive/secret (and unknown) classifications only ever through a grant naming them.
4. The subscriber's own selection (``requested``) narrows further.
5. If the grant requires data-subject consent, a record whose subject has no consent active
   now for this consumer and topic (``None``, or a consent that is not active) is withheld
   whole; a consent that lists fields narrows. ``NOT_REQUIRED`` skips this rule: pass it
   only where no record is at hand (may this subscription receive anything at all?) —
   every per-record decision under such a grant must pass the looked-up consent or None.
6. Only fields of the record's schema (``fields``) can be allowed.

The owner department has no implicit rights: reading its own topic through the exchange goes
through the same rules (its own steward approves its agreement), so every read is on record.
``withhold`` is true exactly when nothing may be delivered; the caller audits that.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from consent.domain import (
    NOT_REQUIRED,
    OPEN_CLASSES,
    CatalogEntry,
    ConsentRef,
    Grant,
    NotRequired,
)


class FieldLike(Protocol):
    """What the policy reads of ``schemas.classification.FieldInfo``."""

    @property
    def path(self) -> str: ...

    @property
    def classification(self) -> str: ...


@dataclass(frozen=True)
class Decision:
    allowed: frozenset[str]
    withhold: bool
    reason: str  # "ok" | "not_shared" | "no_agreement" | "no_subject_consent" | "no_fields"


def _nothing(reason: str) -> Decision:
    return Decision(frozenset(), True, reason)


def grant_applies(grant: Grant | None, consumer_dept: str, topic: str, now: datetime) -> bool:
    return (
        grant is not None
        and grant.consumer == consumer_dept
        and grant.topic == topic
        and grant.valid_at(now)
    )


def consent_applies(
    consent: ConsentRef | NotRequired | None, consumer_dept: str, topic: str, now: datetime
) -> bool:
    return (
        isinstance(consent, ConsentRef)
        and consent.consumer == consumer_dept
        and consent.topic == topic
        and consent.active_at(now)
    )


def _field_allowed(entry: CatalogEntry, grant: Grant | None, f: FieldLike) -> bool:
    if grant is not None and f.path in grant.fields:
        return True
    return entry.share_type == "unconditional" and f.classification in OPEN_CLASSES


def decide(
    *,
    consumer_dept: str,
    entry: CatalogEntry,
    grant: Grant | None,
    fields: Sequence[FieldLike],
    requested: Set[str] | None,
    subject_consent: ConsentRef | NotRequired | None,
    now: datetime,
) -> Decision:
    if entry.share_type == "not_shared":
        return _nothing("not_shared")
    active = grant if grant_applies(grant, consumer_dept, entry.topic, now) else None
    if entry.share_type != "unconditional" and active is None:
        return _nothing("no_agreement")
    allowed = {f.path for f in fields if _field_allowed(entry, active, f)}
    if requested is not None:
        allowed &= requested
    if (
        active is not None
        and active.requires_subject_consent
        and subject_consent is not NOT_REQUIRED
    ):
        if not consent_applies(subject_consent, consumer_dept, entry.topic, now):
            return _nothing("no_subject_consent")
        assert isinstance(subject_consent, ConsentRef)
        if subject_consent.fields:
            allowed &= subject_consent.fields
    if not allowed:
        return _nothing("no_fields")
    return Decision(frozenset(allowed), False, "ok")
