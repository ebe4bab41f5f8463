"""Request limits for every route, before any route parses anything (pure ASGI middleware).

- Body size: refused with 413 by the declared Content-Length, or while counting the bytes of
  a streamed body. Bulk routes (publish) have their own, larger limit.
- JSON shape: every other route's body is read here (it is small), and JSON that would break
  later code (nesting deeper than :data:`gateway.jsoncheck.MAX_DEPTH`, lone surrogates,
  numbers that are not finite) is refused with 422. The publish route checks its (large)
  body itself with the same module.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.errors import InvalidInput
from gateway import jsoncheck

Refusal = Callable[[Scope, Exception], Response]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


class RequestLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        bulk_max_bytes: int,
        is_bulk: Callable[[Scope], bool],
        refuse: Refusal,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.bulk_max_bytes = bulk_max_bytes
        self.is_bulk = is_bulk
        self.refuse = refuse  # renders a refusal in the format of the route it was meant for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bulk = self.is_bulk(scope)
        limit = self.bulk_max_bytes if bulk else self.max_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self.refuse(scope, BodyTooLarge(limit))(scope, receive, send)
            return
        if bulk:  # streamed to the route, which parses it; the count stops it at the limit
            await self.app(scope, _counting(receive, limit), send)
            return
        body = await _read(receive, limit)
        if body is None:
            await self.refuse(scope, BodyTooLarge(limit))(scope, receive, send)
            return
        if problem := _json_problem(body):
            await self.refuse(scope, problem)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


async def _read(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client left; the route will notice
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def _json_problem(body: bytes) -> InvalidInput | None:
    """A refusal for JSON that parses but must not reach a route; None for anything else
    (not JSON at all is for the route to answer in its own words)."""
    if body.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        jsoncheck.loads(body)
    except jsoncheck.Unacceptable as exc:
        return exc
    except InvalidInput:
        return None
    return None
