"""Webhook delivery: signed POSTs with retries and a dead-letter list.

Signature header (verify on the receiving side, reject if |now - t| > 300 s):
    X-Exchange-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
One gateway instance at a time dispatches a subscription (a lease row in the database).
Where a webhook may point, and how the POST is pinned to a checked address: :mod:`egress`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import socket
import time
import uuid

import httpx

from dataplane import cursor as cursors
from dataplane.egress import (
    EgressPolicy,
    RefusedTarget,
    Resolver,
    Target,
    check_url,
    resolve_target,
    system_resolver,
)
from dataplane.loop import DeliveryLoop
from dataplane.store import Subscription, SubscriptionStore
from exchange import metrics
from exchange.errors import ExchangeError
from exchange.secrets_store import unseal

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Exchange-Signature"
TOLERANCE_S = 300
RETRIES = 5  # delays base, 2·base, 4·base, ...; then dead-letter the page and move on
LEASE_S = 15.0
# Dead-letter reasons: a fixed vocabulary, so a subscriber learns nothing about the network
# (no address, port or error text) — plus "http_status:<code>" for a receiver's answer.
REASONS = ("invalid_url", "refused_address", "unreachable", "timeout")


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def check_webhook_url(url: str, policy: EgressPolicy) -> None:
    """Refuse a URL the dispatcher would never send to (see :mod:`dataplane.egress`)."""
    check_url(url, policy)


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
    """Serves every active webhook subscription; one failing target never stops the others:
    a page it cannot take is dead-lettered with a reason from a fixed vocabulary
    (:data:`REASONS`) that names no address, port or error text."""

    def __init__(
        self,
        *,
        store: SubscriptionStore,
        loop: DeliveryLoop,
        master_key: bytes,
        retry_base_s: float,
        policy: EgressPolicy,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.store = store
        self.loop = loop
        self.master_key = master_key
        self.policy = policy
        self.resolver = resolver
        self.owner = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._runner: asyncio.Task[None] | None = None
        # No proxies from the environment, no redirects (a 3xx could point anywhere), and no
        # pooled connections: each POST is pinned to an address checked just before it.
        self.client = httpx.AsyncClient(
            timeout=10.0,
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self.cursor_key = cursors.cursor_key(master_key)
        self.backoff = tuple(retry_base_s * 2**i for i in range(RETRIES))

    async def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._supervise())

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

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
                live = sum(not t.done() for t in self.tasks.values())
                metrics.STREAMS_OPEN.labels("webhook").set(live)
            except ExchangeError:
                log.warning("webhook supervisor: control plane unavailable")
            except Exception as exc:  # never let one bad row stop every webhook
                log.error("webhook supervisor: unexpected %s", type(exc).__name__)
            await asyncio.sleep(1.0)

    async def _serve(self, sub_id: str) -> None:
        while True:
            try:
                if await self._turn(sub_id) is None:
                    return
            except ExchangeError as exc:  # revoked, KMS down, ...: pause, never deliver
                log.info("webhook %s paused: %s", sub_id, exc.code)
                await asyncio.sleep(1.0)
            except Exception as exc:  # contained: this subscription waits, the rest go on
                log.error("webhook %s: unexpected %s", sub_id, type(exc).__name__)
                await asyncio.sleep(5.0)

    async def _turn(self, sub_id: str) -> bool | None:
        """One lease-and-page turn; None once the subscription is no longer active."""
        if not await asyncio.to_thread(self.store.acquire_lease, sub_id, self.owner, LEASE_S):
            await asyncio.sleep(LEASE_S / 3)
            return False
        sub = await asyncio.to_thread(self.store.get, sub_id)
        if sub.status != "active":
            return None
        sent = await self._one_page(sub)
        if not sent:
            await asyncio.sleep(0.5)
        return sent

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
                metrics.WEBHOOK_DEAD_LETTERS.inc()
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
        """None when delivered, else the last failure's reason."""
        try:
            target = check_url(url, self.policy)  # a URL stored before today's rules
        except RefusedTarget:
            return "invalid_url"
        error: str | None = "not_attempted"
        for delay in (*self.backoff, None):
            error = await self._attempt(target, secret, body)
            if error is None or error == "refused_address" or delay is None:
                break
            metrics.WEBHOOK_RETRIES.inc()
            await asyncio.sleep(delay)
        return error

    async def _attempt(self, target: Target, secret: str, body: bytes) -> str | None:
        try:
            addresses = await resolve_target(target, self.policy, self.resolver)
        except RefusedTarget:
            return "refused_address"
        except (OSError, TimeoutError, UnicodeError):
            return "unreachable"  # resolution failed
        for ip in addresses:  # each one checked; the next only if this one cannot connect
            try:
                r = await self.client.post(
                    httpx.URL(target.url).copy_with(host=str(ip)),
                    content=body,
                    headers={
                        "Host": target.host_header,
                        "Content-Type": "application/json",
                        SIGNATURE_HEADER: sign(secret, body),
                    },
                    extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
                )
            except httpx.ConnectError:
                continue
            except httpx.TimeoutException:
                return "timeout"
            except (httpx.HTTPError, OSError, ValueError):
                return "unreachable"
            return None if 200 <= r.status_code < 300 else f"http_status:{r.status_code}"
        return "unreachable"  # no address would connect
