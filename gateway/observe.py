"""Per request: a request id, the access log line and the HTTP metrics (pure ASGI middleware).

The request id is the client's ``X-Request-ID`` when it is sane (1 to 64 of ``[A-Za-z0-9._:-]``),
else a fresh one; it is returned in ``X-Request-ID``, set in :data:`exchange.logs.REQUEST_ID`
for every log line written while the request runs, and logged
with the access line. Routes are labelled and logged by their template
(``/v1/topics/{topic}/records``), never the raw path or query, which can hold identifiers.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange import metrics, tracing
from exchange.logs import REQUEST_ID

access_log = logging.getLogger("exchange.access")

_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
HEADER = "x-request-id"


def request_id(offered: str | None) -> str:
    return offered if offered and _SANE.match(offered) else uuid.uuid4().hex


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else metrics.ROUTE_UNMATCHED


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(Headers(scope=scope).get(HEADER))
        token = REQUEST_ID.set(rid)
        status = 500  # if the app raises before answering
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        method = metrics.method_label(str(scope.get("method", "")))
        try:
            with tracing.span(f"HTTP {method}", request_id=rid) as sp:
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    if sp is not None:  # tracing on: name the span by its route template
                        sp.update_name(f"{method} {route_of(scope)}")
                        sp.set_attribute("http.route", route_of(scope))
                        sp.set_attribute("http.response.status_code", status)
        finally:
            took = time.perf_counter() - t0
            route = route_of(scope)
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_SECONDS.labels(method, route).observe(took)
            access_log.info(
                "%s %s %d %.1fms",
                method, route, status, took * 1000,
                extra={"method": method, "route": route, "status": status,
                       "duration_ms": round(took * 1000, 1)},
            )  # fmt: skip
            REQUEST_ID.reset(token)
