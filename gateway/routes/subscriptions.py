"""Subscriptions: create, pull (long-poll) with commit, Server-Sent Events, webhooks, replay."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dataplane import cursor as cursors
from dataplane.cursor import Offsets
from dataplane.fanout import LiveBatch
from dataplane.loop import RECHECK_S, Step
from dataplane.store import Subscription
from dataplane.webhooks import check_webhook_url, new_webhook_secret
from exchange.auditing import AuditRecord
from exchange.errors import ExchangeError, Forbidden, NotFound
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.auth import require, services
from gateway.container import Services
from gateway.streams import HeldStream

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
KEEPALIVE_S = 15.0
INLINE_RECORDS = 32  # live batches up to this size are encoded on the event loop


class WebhookIn(BaseModel):
    url: str = Field(
        description="HTTPS URL to a public address (or an operator-allowed network); plain "
        "HTTP only to loopback when the operator enables local development"
    )


class SubscriptionIn(BaseModel):
    topic: str
    fields: list[str] | None = Field(
        default=None, description="Only these field paths (default: all granted)"
    )
    start: str = Field(
        default="earliest", description="`earliest`, `latest`, or an ISO-8601 timestamp"
    )
    webhook: WebhookIn | None = None


class SubscriptionOut(BaseModel):
    id: str
    topic: str
    consumer: str
    fields: list[str] | None
    start: str
    cursor: str = Field(description="Committed cursor (opaque)")
    status: str
    webhook_url: str | None = None
    webhook_secret: str | None = Field(
        default=None, description="Shown once: verifies X-Exchange-Signature on deliveries"
    )


class RecordOut(BaseModel):
    record_id: str = Field(description="Stable id for de-duplication: topic/partition/offset")
    key: str | None
    value: dict[str, Any]
    partition: int
    offset: int
    timestamp: int
    schema_id: int
    redacted: dict[str, str] | None = Field(
        default=None,
        description="Granted fields that could not be opened: path → reason "
        "(`shredded`, `integrity`); their value is null",
    )


class PageOut(BaseModel):
    records: list[RecordOut]
    cursor: str = Field(description="Commit this after processing the records")
    withheld: int = Field(description="Records skipped by policy (audited)")


class CommitIn(BaseModel):
    cursor: str


class SeekIn(BaseModel):
    start: str = Field(description="`earliest`, `latest`, an ISO-8601 timestamp, or a cursor")


def _cursor_key(svc: Services) -> bytes:
    return cursors.cursor_key(svc.master_key)


def _out(svc: Services, sub: Subscription, secret: str | None = None) -> SubscriptionOut:
    return SubscriptionOut(
        id=sub.id,
        topic=sub.topic,
        consumer=sub.consumer,
        fields=sorted(sub.fields) if sub.fields is not None else None,
        start=sub.start,
        cursor=cursors.encode(_cursor_key(svc), sub.id, sub.cursor),
        status=sub.status,
        webhook_url=sub.webhook_url,
        webhook_secret=secret,
    )


def _resolve_start(svc: Services, topic: str, start: str) -> Offsets:
    pool = svc.readers
    if start == "earliest":
        return {}
    if start == "latest":
        return dict(pool.end_offsets(topic))
    return dict(pool.offsets_for_time(topic, cursors.start_time_ms(start)))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionOut,
    response_model_exclude_none=True,
)
@access("own:subscriber")
async def create(
    body: SubscriptionIn,
    who: Principal = Depends(require("subscriber")),
    svc: Services = Depends(services),
) -> SubscriptionOut:
    secret = None
    if body.webhook is not None:
        check_webhook_url(body.webhook.url, svc.webhooks.policy)
        secret = new_webhook_secret()
    draft = Subscription(
        "new",
        body.topic,
        who.department,
        who.client_id,
        frozenset(body.fields) if body.fields else None,
        body.start,
        {},
        "active",
        None,
        None,
    )
    try:
        await run_in_threadpool(svc.deliverer.ensure_allowed, draft, who.client_id)
    except NotFound as exc:  # same answer for a topic that does not exist
        raise Forbidden("no active sharing agreement allows this subscription") from exc
    start = await run_in_threadpool(_resolve_start, svc, body.topic, body.start)
    from exchange.secrets_store import seal

    sealed = seal(svc.master_key, secret.encode(), "webhook-secret") if secret else None
    sub = await run_in_threadpool(
        lambda: svc.subscriptions.create(
            topic=body.topic,
            consumer=who.department,
            client_id=who.client_id,
            fields=body.fields,
            start=body.start,
            cursor=start,
            webhook_url=body.webhook.url if body.webhook else None,
            webhook_secret=sealed,
        )
    )
    await run_in_threadpool(
        svc.audit.append,
        AuditRecord(
            "subscription.created",
            actor=who.client_id,
            department=who.department,
            topic=body.topic,
            data={
                "subscription": sub.id,
                "fields": body.fields,
                "start": body.start,
                "webhook": body.webhook is not None,
            },
        ),
    )
    return _out(svc, sub, secret)


@router.get("", response_model=list[SubscriptionOut], response_model_exclude_none=True)
@access("subscriber")
async def list_subscriptions(
    who: Principal = Depends(require("subscriber")), svc: Services = Depends(services)
) -> list[SubscriptionOut]:
    subs = await run_in_threadpool(svc.subscriptions.for_consumer, who.department)
    return [_out(svc, s) for s in subs]


@router.get("/{sub_id}", response_model=SubscriptionOut, response_model_exclude_none=True)
@access("own:subscriber")
async def get(
    sub_id: str, who: Principal = Depends(require("subscriber")), svc: Services = Depends(services)
) -> SubscriptionOut:
    return _out(svc, await run_in_threadpool(svc.subscriptions.get, sub_id, who.department))


@router.delete("/{sub_id}", status_code=status.HTTP_204_NO_CONTENT)
@access("own:subscriber")
async def close(
    sub_id: str, who: Principal = Depends(require("subscriber")), svc: Services = Depends(services)
) -> None:
    await run_in_threadpool(svc.subscriptions.get, sub_id, who.department)
    await run_in_threadpool(svc.subscriptions.close, sub_id)


async def _active(svc: Services, sub_id: str, who: Principal) -> Subscription:
    sub = await run_in_threadpool(svc.subscriptions.get, sub_id, who.department)
    if sub.status != "active":
        raise NotFound(f"subscription {sub_id} not found")
    return sub


@router.get(
    "/{sub_id}/records",
    response_model=PageOut,
    response_model_exclude_none=True,
    summary="Long-poll a page from the committed cursor (or `cursor=` to replay)",
)
@access("own:subscriber")
async def records(
    sub_id: str,
    max_records: int = Query(500, ge=1, le=5000, alias="max"),
    wait_ms: int = Query(1000, ge=0, le=30000),
    cursor: str | None = Query(None, description="Read from here instead"),
    who: Principal = Depends(require("subscriber")),
    svc: Services = Depends(services),
) -> Response:
    sub = await _active(svc, sub_id, who)
    start = cursors.decode(_cursor_key(svc), sub.id, cursor) if cursor else sub.cursor
    step = await svc.delivery.long_poll(
        sub, who.client_id, "pull", start, max_records=max_records, wait_ms=wait_ms
    )
    # Returned as ready bytes: re-validating 500 records through the response model cost
    # more than rendering them; the model still documents the shape in OpenAPI.
    page = {
        "records": step.rendered.records,
        "withheld": len(step.rendered.withheld),
        "cursor": cursors.encode(_cursor_key(svc), sub.id, step.next_offsets),
    }
    return Response(page_json(page), media_type="application/json")


def page_json(page: dict[str, Any]) -> bytes:
    """A page as JSON, by orjson (the stdlib encoder took ~15 % of the gateway's CPU in the
    delivery bench). Rendering already wrote non-finite floats as strings
    (``dataplane.render.non_finite``), so orjson's NaN → null never applies; anything orjson
    refuses goes to the encoder every JSON answer used before, with its errors."""
    try:
        return orjson.dumps(page)
    except TypeError:  # orjson.JSONEncodeError: e.g. an int beyond 64 bits
        return bytes(JSONResponse(page).body)


@router.post("/{sub_id}/commit", summary="Commit a cursor: later pulls start after it")
@access("own:subscriber")
async def commit(
    sub_id: str,
    body: CommitIn,
    who: Principal = Depends(require("subscriber")),
    svc: Services = Depends(services),
) -> dict[str, str]:
    key = _cursor_key(svc)
    # One worker-thread hop and one transaction: the subscription checked (this
    # department's, active), then the cursor, then the commit (on every page's path).
    await run_in_threadpool(
        lambda: svc.subscriptions.commit(
            sub_id, lambda: cursors.decode(key, sub_id, body.cursor), consumer=who.department
        )
    )
    return {"status": "committed"}


@router.post(
    "/{sub_id}/seek",
    response_model=SubscriptionOut,
    response_model_exclude_none=True,
    summary="Replay: move the committed cursor to a start, timestamp or cursor",
)
@access("own:subscriber")
async def seek(
    sub_id: str,
    body: SeekIn,
    who: Principal = Depends(require("subscriber")),
    svc: Services = Depends(services),
) -> SubscriptionOut:
    sub = await _active(svc, sub_id, who)
    if body.start.startswith("1."):
        offsets = cursors.decode(_cursor_key(svc), sub.id, body.start)
    else:
        offsets = await run_in_threadpool(_resolve_start, svc, sub.topic, body.start)

    return _out(svc, await run_in_threadpool(svc.subscriptions.reset_cursor, sub.id, offsets))


@router.get("/{sub_id}/dead-letters", summary="Webhook deliveries that gave up")
@access("own:subscriber")
async def dead_letters(
    sub_id: str, who: Principal = Depends(require("subscriber")), svc: Services = Depends(services)
) -> list[dict[str, Any]]:
    sub = await _active(svc, sub_id, who)
    return await run_in_threadpool(svc.subscriptions.dead_letters, sub.id)


@router.get(
    "/{sub_id}/stream",
    summary="Server-Sent Events; resume with Last-Event-ID",
    response_class=StreamingResponse,
)
@access("own:subscriber")
async def stream(
    sub_id: str,
    request: Request,
    who: Principal = Depends(require("subscriber")),
    svc: Services = Depends(services),
) -> StreamingResponse:
    sub = await _active(svc, sub_id, who)
    last = request.headers.get("last-event-id")
    start = cursors.decode(_cursor_key(svc), sub.id, last) if last else sub.cursor
    await run_in_threadpool(svc.deliverer.ensure_allowed, sub, who.client_id)
    release = svc.streams.acquire(who.client_id)  # 429 beyond the per-client cap
    return HeldStream(
        _events(svc, sub, who, start),
        release=release,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _page_events(step: Step, pos: Offsets, sign: cursors.Signer) -> bytes:
    """A catch-up page as events, each with the cursor after it, one chunk (advances ``pos``)."""
    by_offset = {(r["partition"], r["offset"]): r for r in step.rendered.records}
    out = []
    for r in step.records:
        pos[r.partition] = max(pos.get(r.partition, 0), r.offset + 1)
        rec = by_offset.get((r.partition, r.offset))
        if rec is not None:
            out.append(_sse("record", rec, sign.encode(pos)))
    return b"".join(out)


def _live_events(live: Sequence[LiveBatch], pos: Offsets, sign: cursors.Signer) -> bytes:
    """Live batches (rendered once for the group) as this stream's events, one chunk: one
    write through the ASGI stack per wake-up, not one per event (advances ``pos``)."""
    out = []
    for batch in live:
        for r in batch.records:
            if r.offset < pos.get(r.partition, 0):
                continue
            pos[r.partition] = r.offset + 1
            item = batch.items.get((r.partition, r.offset))
            if item is not None:
                out.append(_sse_raw("record", item, sign.encode(pos)))
    return b"".join(out)


def _sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    return _sse_raw(event, json.dumps(data, separators=(",", ":")), event_id)


def _sse_raw(event: str, data: str, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


async def _events(
    svc: Services, sub: Subscription, who: Principal, start: Offsets
) -> AsyncIterator[bytes]:
    groups = svc.groups
    sign = cursors.Signer(_cursor_key(svc), sub.id)
    pos = dict(start)
    last_check = last_send = time.monotonic()
    connected = False

    async def allowed() -> bool:
        try:  # a fresh cached "yes" costs nothing; a stale one is refreshed once for many
            await svc.delivery.check(sub, who.client_id)
            return True
        except ExchangeError:
            return False

    try:
        while True:
            group, member, live_from = await groups.join(sub, who.client_id)
            try:
                if not connected:  # said once the stream follows the topic's live feed
                    connected = True
                    yield b": connected\n\n"
                # Catch up to where the group's live pushes start, then follow them.
                while any(pos.get(p, 0) < o for p, o in live_from.items()):
                    if not await allowed():
                        yield _sse("revoked", {"subscription": sub.id})
                        return
                    async with svc.streams.work(who.client_id):  # a fair share of threads
                        step = await svc.delivery.step(
                            sub,
                            who.client_id,
                            "sse",
                            pos,
                            max_records=500,
                            wait_ms=200,
                            until=live_from,
                        )
                        chunk = await asyncio.to_thread(_page_events, step, pos, sign)
                    if chunk:
                        yield chunk
                    pos = {**pos, **step.next_offsets}
                    last_check = last_send = time.monotonic()
                queue = member.queue
                while not member.overflowed:
                    now = time.monotonic()
                    if now - last_check >= RECHECK_S:
                        # No request.is_disconnected() here: the response already ends the
                        # stream when the client goes (Starlette listens for the disconnect).
                        if not await allowed():
                            yield _sse("revoked", {"subscription": sub.id})
                            return
                        last_check = now = time.monotonic()
                    if now - last_send >= KEEPALIVE_S:
                        yield b": keep-alive\n\n"
                        last_send = now
                    # Woken by a live batch or, when idle, by the group's tick once due.
                    member.due = last_check + RECHECK_S
                    live = [await queue.get()]
                    while not queue.empty():  # fell behind: everything queued in one write
                        live.append(queue.get_nowait())
                    batches = [b for b in live if b is not None]
                    if not batches:
                        continue
                    if sum(len(b.records) for b in batches) > INLINE_RECORDS:
                        async with svc.streams.work(who.client_id):  # a burst: off the loop
                            chunk = await asyncio.to_thread(_live_events, batches, pos, sign)
                    else:
                        chunk = _live_events(batches, pos, sign)
                    if chunk:
                        yield chunk
                        last_send = time.monotonic()
            finally:
                group.leave(member)
    except ExchangeError as exc:
        yield _sse("error", {"code": exc.code, "detail": exc.message})
