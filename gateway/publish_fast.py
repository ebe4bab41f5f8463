"""The publish fast path: ``POST /v1/topics/{topic}/records`` served by a plain ASGI layer,
without FastAPI's route matching and dependency solving.

Small publishes are what government applications mostly send, and for a 1-record request
the framework (matching ~80 routes, solving dependencies, two thread-pool trips, a worker
thread blocked until the group commit) cost more CPU than the publish itself
(bench/RESULTS.md, branch fastpub). This layer sits inside :class:`gateway.observe.Observe`
and :class:`gateway.limits.RequestLimits` (request id, access log, metrics by route template
and body limits are theirs, as for every route) and answers exactly as the FastAPI route
:func:`gateway.routes.topics.publish` does — which stays the route's declaration (OpenAPI,
docs, authz matrix) and serves it when ``EXCHANGE_PUBLISH_FAST_PATH=false``:

- the same steps in the same order: the caller's token and rate limit, then
  ``Publisher.authorize`` (with the mirrored-topic refusal), both through
  :func:`gateway.routes.topics.publish_access`; the ``Idempotency-Key`` check; the body
  (:func:`gateway.routes.topics.parse_batch`: gzip, JSON or Avro frames, batch limit); then
  ``Publisher.publish`` (with a key) or ``Publisher.submit``;
- the same answer for every refusal, through the gateway's error mapping and denial audit
  (:mod:`gateway.errors`);
- one trip to a worker thread: a small body (declared length up to :data:`PREFETCH`, no
  ``Expect: 100-continue``) has already arrived with the headers, so it is read first and
  the whole request is checked, parsed, validated, sealed and encoded in one trip; a large
  or streamed body is read only once the caller is authorised (two trips, as before);
- without an ``Idempotency-Key`` no thread waits for the group commit: the request awaits a
  future that the group's leader resolves, and its work runs on a few threads of this
  layer's own (:data:`THREADS`); a request with a key waits for its commit on a thread of
  AnyIO's pool, as the FastAPI route's does.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any, TypeVar, cast

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import Field, TypeAdapter, ValidationError
from starlette._utils import get_route_path
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from consent.domain import CatalogEntry
from dataplane.idempotency import request_digest
from exchange.errors import ExchangeError
from exchange.identity.tokens import Principal
from gateway import errors
from gateway.container import Services
from gateway.problem import UNCARRIABLE, validation_problem
from gateway.routes.topics import parse_batch, publish_access

log = logging.getLogger("gateway.errors")  # as the FastAPI handlers' refusal lines

PREFETCH = 64 * 1024  # bodies up to this size are read before the caller is checked
# Threads for the work that never waits on a commit (token, parse, validate, seal, encode):
# few, as it needs the GIL; with 40 contending for it the same work cost ~1.3x the CPU, with
# 2, 4 or 8 about the same (bench/RESULTS.md, fastpub). A few, not one: a database round
# trip (the token's liveness on PostgreSQL) or a KMS call on a DEK cache miss blocks one.
THREADS = 4
_PATH = re.compile(r"^/v1/topics/([^/]+)/records$")  # Starlette's match of {topic}
_KEY = TypeAdapter(Annotated[str, Field(max_length=200)])  # the route's Header(max_length)
_UNCARRIABLE = tuple(UNCARRIABLE)
_T = TypeVar("_T")

Answer = tuple[dict[str, Any], bool]  # the publish answer and whether it was replayed


class PublishFastPath:
    def __init__(self, app: ASGIApp, *, svc: Services, route: BaseRoute) -> None:
        self.app, self.svc, self.route = app, svc, route
        self.threads = ThreadPoolExecutor(THREADS, thread_name_prefix="publish")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        found = _PATH.match(get_route_path(scope))
        if found is None:
            await self.app(scope, receive, send)
            return
        topic = found[1]
        scope["route"] = self.route  # the access log, metrics and denial audit name it
        scope["path_params"] = {"topic": topic}
        request = Request(scope, receive)
        try:
            answer = await self._serve(request, topic)
        except (ExchangeError, HTTPException) as exc:
            await (await errors.answer(request, exc))(scope, receive, send)
            return
        except RequestValidationError as exc:
            await validation_problem(list(exc.errors()))(scope, receive, send)
            return
        except _UNCARRIABLE as exc:
            log.warning("refused %s on %s", type(exc).__name__, request.url.path)
            await errors.response_for(exc)(scope, receive, send)
            return
        await _send_json(send, *answer)

    async def _serve(self, request: Request, topic: str) -> Answer:
        key = request.headers.get("idempotency-key")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) <= PREFETCH and "expect" not in request.headers:
            try:
                body = await request.body()
            except ClientDisconnect:  # gone: still check (and audit) who it was
                await self._run(publish_access, topic, request, self.svc)
                raise
            run = self._waiting if key else self._through
            return await run(self._whole, request, topic, key, body)
        allowed = await self._run(publish_access, topic, request, self.svc)
        _check_key(key)
        body = await request.body()  # the size limit is enforced as it streams
        run = self._waiting if key else self._through
        return await run(self._publish, request, topic, allowed, key, body)

    def _whole(
        self, request: Request, topic: str, key: str | None, body: bytes
    ) -> Answer | Future[dict[str, Any]]:
        allowed = publish_access(topic, request, self.svc)
        _check_key(key)
        return self._publish(request, topic, allowed, key, body)

    def _publish(
        self,
        request: Request,
        topic: str,
        allowed: tuple[Principal, CatalogEntry],
        key: str | None,
        body: bytes,
    ) -> Answer | Future[dict[str, Any]]:
        who, entry = allowed
        body, batch = parse_batch(body, request.headers, self.svc.settings)
        if key:
            digest = request_digest(body, topic)
            return self.svc.publisher.publish(
                who, entry, batch, idempotency_key=key, request_hash=digest
            )
        return self.svc.publisher.submit(who, entry, batch)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on one of this layer's threads, in this request's context (request
        id, span)."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, context.run, fn, *args)

    async def _waiting(self, fn: Callable[..., Answer | Future[Any]], *args: Any) -> Answer:
        """``fn(*args)`` on a thread of AnyIO's pool: with an ``Idempotency-Key`` the publish
        waits for its commit there, as the FastAPI route's does."""
        outcome = await run_in_threadpool(fn, *args)
        assert not isinstance(outcome, Future)  # publish() answers once committed
        return outcome

    async def _through(self, fn: Callable[..., Any], *args: Any) -> Answer:
        """``fn(*args)`` on one of this layer's threads, in this request's context, and then
        the answer of the group commit it submitted: the event loop hears of the request
        once, when it is answered (or refused)."""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Answer] = loop.create_future()
        context = contextvars.copy_context()

        def settle(result: Answer | None, error: BaseException | None) -> None:
            if answered.cancelled():
                return
            if error is not None:
                answered.set_exception(error)
            else:
                answered.set_result(cast(Answer, result))

        def committed(f: Future[dict[str, Any]]) -> None:
            error = f.exception()
            loop.call_soon_threadsafe(settle, None if error else (f.result(), False), error)

        def work() -> None:
            try:
                outcome = context.run(fn, *args)
            except BaseException as exc:  # raised in the request, on the loop
                loop.call_soon_threadsafe(settle, None, exc)
                return
            if isinstance(outcome, Future):
                outcome.add_done_callback(committed)
            else:
                loop.call_soon_threadsafe(settle, outcome, None)

        self.threads.submit(work)
        return await answered


def _check_key(key: str | None) -> None:
    """The route's ``Idempotency-Key`` header check, with FastAPI's 422 for a long key."""
    if key is None or len(key) <= 200:
        return
    try:
        _KEY.validate_python(key)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("header", "Idempotency-Key")} for e in exc.errors()]
        ) from None


async def _send_json(send: Send, result: dict[str, Any], replayed: bool) -> None:
    """What ``JSONResponse(result, headers=...)`` sends: the same bytes and header order."""
    body = orjson.dumps(result)
    headers = [(b"idempotent-replayed", b"true")] if replayed else []
    headers += [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
