"""CSRF protection for every console form: a token bound to the browser.

The token is an HMAC (key derived from the master key) of the session id, or before sign-in
of a random ``exchange_pre`` cookie; forms carry it in the hidden field ``csrf``. A POST
whose field does not match — or whose ``Origin`` is another site — is refused with 403 and
audited (``console.csrf_refused``). SameSite cookies are the second line, not the only one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from starlette.requests import Request

FIELD = "csrf"
PRE_COOKIE = "exchange_pre"


def token(master_key: bytes, anchor: str) -> str:
    key = hmac.new(master_key, b"exchange console csrf v1", hashlib.sha256).digest()
    mac = hmac.new(key, anchor.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def same_origin(request: Request) -> bool:
    """No ``Origin`` (old browsers, some same-origin GETs) is accepted; another one is not."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def valid(master_key: bytes, anchor: str | None, submitted: str | None) -> bool:
    if not anchor or not submitted:
        return False
    return hmac.compare_digest(token(master_key, anchor), submitted)
