"""Webhook delivery: signed POSTs with retries and a dead-letter list.

Signature header (verify on the receiving side, reject if |now - t| > 300 s):
    X-Exchange-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
One gateway instance at a time dispatches a subscription (a lease row in the database).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
import uuid
from urllib.parse import urlsplit

import httpx

from dataplane import cursor as cursors
from dataplane.loop import DeliveryLoop
from dataplane.store import Subscription, SubscriptionStore
from exchange.errors import ExchangeError, InvalidInput
from exchange.secrets_store import unseal

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Exchange-Signature"
TOLERANCE_S = 300
RETRIES = 5  # delays base, 2·base, 4·base, ...; then dead-letter the page and move on
LEASE_S = 15.0


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def check_webhook_url(url: str, allowed_hosts: list[str] | None = None) -> None:
    """https (plain http only to loopback); with ``allowed_hosts`` (operator setting) the
    host must also be one of them or under one (``.gov.example`` style suffixes)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    secure = parts.scheme == "https" and host
    local = parts.scheme == "http" and host and _loopback(host)
    if not (secure or local):
        raise InvalidInput("webhook URL must be https (plain http only to loopback)")
    if (
        allowed_hosts
        and not local
        and not any(
            host == a.lower().lstrip(".") or host.endswith("." + a.lower().lstrip("."))
            for a in allowed_hosts
        )
    ):
        raise InvalidInput("webhook host is not on the exchange's allow-list")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """What a receiver does; used by tests and documented for subscribers."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - t) > TOLERANCE_S:
        return False
    return hmac.compare_digest(sign(secret, body, t), header)


class WebhookDispatcher:
    def __init__(
        self,
        *,
        store: SubscriptionStore,
        loop: DeliveryLoop,
        master_key: bytes,
        retry_base_s: float,
    ) -> None:
        self.store = store
        self.loop = loop
        self.master_key = master_key
        self.owner = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._runner: asyncio.Task[None] | None = None
        self.client = httpx.AsyncClient(timeout=10.0)
        self.cursor_key = cursors.cursor_key(master_key)
        self.backoff = tuple(retry_base_s * 2**i for i in range(RETRIES))

    async def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        for t in [*self.tasks.values(), *([self._runner] if self._runner else [])]:
            t.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.client.aclose()

    async def _supervise(self) -> None:
        while True:
            try:
                subs = await asyncio.to_thread(self.store.webhook_subscriptions)
                for sub in subs:
                    task = self.tasks.get(sub.id)
                    if task is None or task.done():
                        self.tasks[sub.id] = asyncio.create_task(self._serve(sub.id))
            except ExchangeError:
                log.warning("webhook supervisor: control plane unavailable")
            await asyncio.sleep(1.0)

    async def _serve(self, sub_id: str) -> None:
        while True:
            if not await asyncio.to_thread(self.store.acquire_lease, sub_id, self.owner, LEASE_S):
                await asyncio.sleep(LEASE_S / 3)
                continue
            sub = await asyncio.to_thread(self.store.get, sub_id)
            if sub.status != "active":
                return
            try:
                sent = await self._one_page(sub)
            except ExchangeError as exc:  # revoked, KMS down, ...: pause, never deliver
                log.info("webhook %s paused: %s", sub_id, exc.code)
                sent = False
                await asyncio.sleep(1.0)
            if not sent:
                await asyncio.sleep(0.5)

    async def _one_page(self, sub: Subscription) -> bool:
        step = await self.loop.step(
            sub, sub.client_id, "webhook", sub.cursor, max_records=100, wait_ms=500
        )
        if not step.records:
            if step.next_offsets != sub.cursor:
                await asyncio.to_thread(self.store.commit, sub.id, step.next_offsets)
            return False
        if step.rendered.records:
            assert sub.webhook_url is not None and sub.webhook_secret is not None
            secret = unseal(self.master_key, sub.webhook_secret, "webhook-secret").decode()
            body = json.dumps(
                {
                    "subscription": sub.id,
                    "records": step.rendered.records,
                    "cursor": cursors.encode(self.cursor_key, sub.id, step.next_offsets),
                },
                separators=(",", ":"),
            ).encode()
            error = await self._post_with_retries(sub.webhook_url, secret, body)
            if error is not None:
                await asyncio.to_thread(
                    self.store.dead_letter,
                    sub.id,
                    sub.cursor,
                    step.next_offsets,
                    [r["record_id"] for r in step.rendered.records],
                    len(self.backoff) + 1,
                    error,
                )
        await asyncio.to_thread(self.store.commit, sub.id, step.next_offsets)
        return True

    async def _post_with_retries(self, url: str, secret: str, body: bytes) -> str | None:
        error = "not attempted"
        for delay in (*self.backoff, None):
            try:
                r = await self.client.post(
                    url,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        SIGNATURE_HEADER: sign(secret, body),
                    },
                )
                if 200 <= r.status_code < 300:
                    return None
                error = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            if delay is None:
                break
            await asyncio.sleep(delay)
        return error
