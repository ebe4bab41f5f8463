"""One audit event for an action a caller took through a route (API or console)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from exchange.auditing import AuditRecord
from exchange.identity.tokens import Principal
from gateway.container import Services


async def audit_action(
    svc: Services, who: Principal, kind: str, outcome: str = "ok", **data: object
) -> None:
    """Append ``kind`` with ``who`` as actor and department (off the event loop)."""
    record = AuditRecord(
        kind, actor=who.client_id, department=who.department, outcome=outcome, data=dict(data)
    )
    await run_in_threadpool(svc.audit.append, record)
