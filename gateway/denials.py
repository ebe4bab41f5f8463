"""Every refused request leaves an audit event: ``access.denied`` with the attempted identity.

Called from the one place refusals become responses (:mod:`gateway.errors`, and the registry's
Confluent-format mapping), so no route has to remember it. Audited: 401 (no, bad or expired
credentials), 403, and 404 raised by a handler for an authenticated caller — by design a
refusal often looks like "not found", so such a 404 cannot be told from a probe and is
recorded too. The event holds the route template, method, status and error code; never the
body, the token, the secret or the concrete path (which may carry a subject's id).

The identity is the verified principal when there is one; otherwise the ``client_id``/``sub``
claim of the presented JWT or the client id of Basic credentials, unverified (``verified:
false``), else ``anonymous``. One event per refusal: checks that record their own, richer
event (the token endpoint's ``token.denied``, the bearer check's ``auth.denied``, the role
check's and client management's ``authz.denied``) mark the request ``denial_audited`` and
nothing more is written for it here.

Fail closed: if the event cannot be made durable the caller answers 503 instead of the
refusal, so nobody can probe unobserved while the audit log is down.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from typing import Any
from urllib.parse import unquote

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from exchange.auditing import AuditRecord
from exchange.errors import DependencyUnavailable
from exchange.identity.service import Client
from exchange.identity.tokens import Principal

log = logging.getLogger(__name__)

DENIED = "access.denied"
AUDITED = frozenset({401, 403, 404})
# What an unverified claim may look like before it is written anywhere.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+-]{1,128}")
_MAX_TOKEN = 16 * 1024


def _safe(value: Any) -> str | None:
    return value if isinstance(value, str) and _SAFE_ID.fullmatch(value) else None


def unverified_jwt_id(token: str) -> str | None:
    """The ``client_id`` (or ``azp``, ``sub``) claim of a JWT, without checking anything."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > _MAX_TOKEN:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    return next((v for k in ("client_id", "azp", "sub") if (v := _safe(payload.get(k)))), None)


def unverified_basic_id(value: str) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    cid, sep, _ = raw.partition(":")
    return _safe(unquote(cid)) if sep else None


def attempted_identity(request: Request) -> tuple[str, str | None, bool]:
    """(actor, department, verified) of whoever made ``request``."""
    p = getattr(request.state, "principal", None)
    if isinstance(p, Principal):
        return p.client_id, p.department, True
    client = getattr(request.state, "basic_client", None)  # registry: verified Basic auth
    if isinstance(client, Client):
        return client.client_id, client.department, True
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    claimed = None
    if scheme.lower() == "bearer":
        claimed = unverified_jwt_id(value.strip())
    elif scheme.lower() == "basic":
        claimed = unverified_basic_id(value.strip())
    return claimed or "anonymous", None, False


def denial_record(request: Request, status: int, code: str) -> AuditRecord | None:
    """The event for this answer, or None when it is not a refusal worth recording."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if status not in AUDITED or path is None:
        return None  # no route matched: nothing was there to refuse
    if getattr(request.state, "denial_audited", False):
        return None  # already recorded where it was refused, with its own details
    actor, department, verified = attempted_identity(request)
    if status == 404 and not verified:
        return None
    return AuditRecord(
        DENIED,
        actor=actor,
        department=department,
        outcome="denied",
        data={
            "method": request.method,
            "route": path,
            "status": status,
            "code": code,
            "verified": verified,
        },
    )


async def audit_denial(request: Request, status: int, code: str) -> bool:
    """Record the refusal; False if the audit log could not take it (answer 503)."""
    record = denial_record(request, status, code)
    if record is None:
        return True
    try:
        await run_in_threadpool(request.app.state.services.audit.append, record)
    except DependencyUnavailable:
        log.warning("audit log unavailable: refusal of %s %s not recorded", request.method, code)
        return False
    return True
