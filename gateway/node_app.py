"""The county node's HTTP face for local applications (``exchange node run``).

The same publish and poll API as the site gateway — the same request shapes, the same
refusals for bad input (the gateway's own parsers are reused) — over the node's outbox and
prefetched inbox (:mod:`node`). Callers present a local bearer token of the node
(``exchange node token add``), not an exchange OAuth token. A publish answers
``202 Accepted`` once the records are durably in the outbox: ``{"topic", "status": "queued",
"records", "first_sequence", "node"}`` (Kafka offsets do not exist yet at that point).
A full disk or outbox quota answers ``507 outbox_full`` and stores nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from exchange import logs
from exchange.errors import ExchangeError
from gateway.access import ANY, PUBLIC, access
from gateway.limits import RequestLimits
from gateway.problem import (
    UNCARRIABLE,
    Unauthenticated,
    problem,
    response_for,
    validation_problem,
)
from gateway.publish_body import AVRO_CONTENT_TYPE, decoded, frames, json_records
from node.errors import OutboxFull
from node.service import Node, metrics_text

_PUBLISH = re.compile(r"^/v1/topics/[^/]+/records/?$")
_U32 = struct.Struct(">I")
_NO_KEY = 0xFFFFFFFF


class CommitIn(BaseModel):
    cursor: str


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def local_app(request: Request) -> str:
    """The local application presenting this node's bearer token (401 otherwise)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token", code="missing_token")
    app = _node(request).tokens.app_for(token.strip())
    if app is None:
        raise Unauthenticated("invalid token")
    return app


def create_node_app(node: Node) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        node.start()
        yield
        await run_in_threadpool(node.stop)

    app = FastAPI(
        title="exchange county node",
        version="0.1.0",
        description="Store-and-forward publish and prefetched subscriptions for a county office.",
        lifespan=lifespan,
    )
    logs.install()
    app.state.node = node
    _install_errors(app)
    app.add_middleware(
        RequestLimits,
        max_bytes=1024 * 1024,
        bulk_max_bytes=node.config.max_request_bytes,
        is_bulk=_is_publish,
        refuse=_refusal,
    )

    @app.get("/healthz")
    @access(PUBLIC)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/topics/{topic}/records", status_code=202)
    @access(ANY)
    async def publish(
        topic: str,
        request: Request,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", max_length=200)
        ] = None,
        who: str = Depends(local_app),
    ) -> JSONResponse:
        node.check_topic(topic)  # before the body is read, as at the gateway
        raw = await request.body()
        body = decoded(
            raw, request.headers.get("content-encoding", ""), node.config.max_request_bytes
        )
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == AVRO_CONTENT_TYPE:
            kind, version = "avro", "null"
            payloads = [_frame(k, v) for k, v in frames(body)]
        else:
            records, schema_version = json_records(body)
            kind, version = "json", json.dumps(schema_version)
            payloads = [
                json.dumps({"key": k, "value": v, "headers": h}, separators=(",", ":")).encode()
                for k, v, h in records
            ]
        if len(payloads) > node.config.max_batch_records:
            return problem(
                413,
                "batch_too_large",
                f"batch has {len(payloads)} records; the limit is {node.config.max_batch_records}",
            )
        answer, replayed = await run_in_threadpool(
            lambda: node.publish(
                who,
                topic,
                kind,
                version,
                payloads,
                idempotency_key=idempotency_key,
                request_hash=hashlib.sha256(topic.encode() + b"\0" + body).hexdigest(),
            )
        )
        return JSONResponse(
            answer,
            status_code=202,
            headers={"Idempotent-Replayed": "true"} if replayed else None,
        )

    @app.get("/v1/subscriptions/{sub_id}/records")
    @access(ANY)
    async def records(
        sub_id: str,
        max_records: int = Query(500, ge=1, le=5000, alias="max"),
        wait_ms: int = Query(1000, ge=0, le=30000),
        cursor: str | None = Query(None, max_length=40),
        _: str = Depends(local_app),
    ) -> JSONResponse:
        node.check_subscription(sub_id)
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            page = await run_in_threadpool(node.page, sub_id, cursor, max_records)
            if page is not None:
                return JSONResponse(page)
            if time.monotonic() >= deadline:
                return JSONResponse(node.empty_page(sub_id, cursor))
            await asyncio.sleep(0.05)

    @app.post("/v1/subscriptions/{sub_id}/commit")
    @access(ANY)
    async def commit(sub_id: str, body: CommitIn, _: str = Depends(local_app)) -> dict[str, str]:
        node.check_subscription(sub_id)
        await run_in_threadpool(node.commit, sub_id, body.cursor)
        return {"status": "committed"}

    @app.get("/status")
    @access(ANY)
    async def status(_: str = Depends(local_app)) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(node.status))

    @app.get("/metrics", response_class=PlainTextResponse)
    @access(ANY)
    async def metrics(_: str = Depends(local_app)) -> PlainTextResponse:
        body = metrics_text(await run_in_threadpool(node.status))
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    return app


def _frame(key: bytes | None, value: bytes) -> bytes:
    head = _U32.pack(_NO_KEY) if key is None else _U32.pack(len(key)) + key
    return head + _U32.pack(len(value)) + value


def _is_publish(scope: Scope) -> bool:
    return scope.get("method") == "POST" and bool(_PUBLISH.match(scope.get("path", "")))


def _refusal(scope: Scope, exc: Exception) -> JSONResponse:
    return response_for(exc)


def _install_errors(app: FastAPI) -> None:
    """The gateway's problem+json answers (without its audit log: a node has none); the
    outbox being full is 507 (nothing stored, retry later)."""

    @app.exception_handler(ExchangeError)
    async def _domain(_: Request, exc: ExchangeError) -> JSONResponse:
        if isinstance(exc, OutboxFull):
            resp = problem(507, exc.code, exc.message)
            resp.headers["Retry-After"] = "60"
            return resp
        return response_for(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return response_for(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(list(exc.errors()))

    async def _uncarriable(_: Request, exc: Exception) -> JSONResponse:
        return response_for(exc)

    for cls in UNCARRIABLE:
        app.add_exception_handler(cls, _uncarriable)
