"""Who may register a data subject's consent for a topic (issue 12 item 4).

The owning department's ``consent_registrar``s, or those of a *consent-manager* department an
admin designated for the owner (e.g. a citizen-services office recording consents for several
departments). Never the consumer the consent is for: a department cannot unlock records for
itself. :func:`may_register` is the pure rule; :class:`ConsentManagers` stores designations.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consent.models import ConsentManagerRow
from exchange.auditing import AuditRecord, AuditSink
from exchange.db import transaction
from exchange.errors import Forbidden, InvalidInput, NotFound
from exchange.identity.models import DepartmentRow
from exchange.identity.tokens import Principal

REGISTRAR = "consent_registrar"


@dataclass(frozen=True)
class Designation:
    owner: str
    manager: str
    designated_by: str
    designated_at: datetime


def may_register(
    who: Principal, owner: str, consumer: str, managers: Collection[str]
) -> str | None:
    """None if ``who`` may record/change a consent on ``owner``'s topic for ``consumer``; else
    the reason it may not."""
    if not who.has(REGISTRAR):
        return f"requires the role: {REGISTRAR}"
    if who.department == consumer:
        return "a department never registers consent for its own access"
    if who.department != owner and who.department not in managers:
        return "only registrars of the owning department (or its consent manager) may"
    return None


def managers_of(s: Session, owner: str) -> frozenset[str]:
    """Departments designated to manage consents for ``owner`` (inside the caller's session)."""
    q = select(ConsentManagerRow.manager).where(ConsentManagerRow.owner == owner)
    return frozenset(s.scalars(q))


def _designation(r: ConsentManagerRow) -> Designation:
    at = r.designated_at if r.designated_at.tzinfo else r.designated_at.replace(tzinfo=UTC)
    return Designation(r.owner, r.manager, r.designated_by, at)


class ConsentManagers:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        audit: AuditSink,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions, self.audit, self.clock = sessions, audit, clock

    def list(self, owner: str) -> list[Designation]:
        with transaction(self.sessions) as s:
            q = select(ConsentManagerRow).where(ConsentManagerRow.owner == owner)
            return [_designation(r) for r in s.scalars(q.order_by(ConsentManagerRow.manager))]

    def designate(self, owner: str, manager: str, who: Principal) -> Designation:
        self._admin_only(who, "consent.manager_designated", owner, manager)
        if owner == manager:
            raise InvalidInput("a department is already the consent manager of its own topics")
        with transaction(self.sessions) as s:
            for dept in (owner, manager):
                if s.get(DepartmentRow, dept) is None:
                    raise NotFound(f"department {dept} not found")
            row = s.get(ConsentManagerRow, (owner, manager))
            if row is None:
                row = ConsentManagerRow(
                    owner=owner,
                    manager=manager,
                    designated_by=who.client_id,
                    designated_at=self.clock(),
                )
                s.add(row)
            designation = _designation(row)
            self._audit(who, "consent.manager_designated", owner, manager)
            return designation

    def withdraw(self, owner: str, manager: str, who: Principal) -> None:
        self._admin_only(who, "consent.manager_withdrawn", owner, manager)
        with transaction(self.sessions) as s:
            row = s.get(ConsentManagerRow, (owner, manager))
            if row is None:
                raise NotFound(f"{manager} is not a consent manager of {owner}")
            s.delete(row)
            self._audit(who, "consent.manager_withdrawn", owner, manager)

    def _admin_only(self, who: Principal, kind: str, owner: str, manager: str) -> None:
        if not who.has("admin"):
            self._audit(who, kind, owner, manager, outcome="denied")
            raise Forbidden("only an admin designates consent managers")

    def _audit(
        self, who: Principal, kind: str, owner: str, manager: str, outcome: str = "ok"
    ) -> None:
        self.audit.append(
            AuditRecord(
                kind,
                actor=who.client_id,
                department=who.department,
                outcome=outcome,
                data={"owner": owner, "manager": manager},
            )
        )
