"""Continuous publish + delivery against one or more gateway URLs, counted for fault tests.

Publishers send batches with an Idempotency-Key and, like a careful client, retry the same
key (on the next URL when there are several: failover behind a load balancer) until it is
answered 200; a subscriber polls and commits all along. Afterwards ``report()`` compares what
was acknowledged with what was delivered: lost, duplicates before dedupe, stuck keys, the
longest delivery stall, and every status code seen (a 500 or a hang is a finding)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from exchange.client import ExchangeClient
from tests.support.scenario import Scenario, person

PER_BATCH = 3


@dataclass
class Load:
    """The traffic and its counters. ``urls``: gateways a client may use, in failover order."""

    s: Scenario
    sub: str
    urls: list[str]
    publishers: int = 3
    retry_for_s: float = 120.0  # a key unanswered this long after stop() is stuck
    acked: dict[str, float] = field(default_factory=dict)  # key → when answered 200
    statuses: Counter[str] = field(default_factory=Counter)  # "503 dependency_unavailable"
    refusal_s: list[float] = field(default_factory=list)  # how long each non-200 answer took
    stuck: list[str] = field(default_factory=list)
    delivered: Counter[str] = field(default_factory=Counter)  # record key → times delivered
    delivery_at: list[float] = field(default_factory=list)  # when a page brought new keys
    failovers: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for n in range(self.publishers):
            self._threads.append(threading.Thread(target=self._publish, args=(n,), daemon=True))
        self._threads.append(threading.Thread(target=self._deliver, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop_publishing(self) -> None:
        self._stop.set()

    def wait_acked(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.acked)} of {n} batches acknowledged")
            time.sleep(0.05)

    def drain(self, timeout: float) -> None:
        """Stop publishing, let every pending key end (or be counted stuck), then wait until
        every acknowledged record has been delivered (or ``timeout`` passes)."""
        self._stop.set()
        for t in self._threads[:-1]:
            t.join(self.retry_for_s + 30)
        wanted = self.wanted()
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.delivered) and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._done.set()
        for t in self._threads:
            t.join(30)

    def wanted(self) -> set[str]:
        return {f"{k}-{j}" for k in list(self.acked) for j in range(PER_BATCH)}

    def report(self, stall_from: float | None = None) -> dict[str, Any]:
        wanted = self.wanted()
        times = sorted(self.delivery_at)
        if stall_from is not None:
            times = [stall_from, *[t for t in times if t >= stall_from]]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return {
            "acknowledged": len(self.acked),
            "records_acknowledged": len(wanted),
            "delivered": len(set(self.delivered) & wanted),
            "duplicates_before_dedupe": sum(n - 1 for n in self.delivered.values() if n > 1),
            "lost": len(wanted - set(self.delivered)),
            "unacknowledged_delivered": len(set(self.delivered) - wanted),
            "stuck_keys": len(self.stuck),
            "stall_s": round(max(gaps, default=0.0), 1),
            "failovers": self.failovers,
            "statuses": dict(self.statuses),
            "slowest_refusal_s": round(max(self.refusal_s, default=0.0), 1),
        }

    # -- workers ---------------------------------------------------------------------------
    def _clients(self, c: ExchangeClient) -> list[ExchangeClient]:
        return [ExchangeClient(u, c.client_id, c._secret) for u in self.urls]

    def _publish(self, n: int) -> None:
        clients = self._clients(self.s.publisher)
        at = n % len(clients)  # spread over the instances, as a load balancer would
        i = 0
        while not self._stop.is_set():
            key = f"p{n}-{i}-{uuid.uuid4().hex[:6]}"
            i += 1
            body = {
                "records": [
                    {"key": f"{key}-{j}", "value": person(i * 10 + j)} for j in range(PER_BATCH)
                ]
            }
            stopped_at: float | None = None
            while True:
                t0 = time.monotonic()
                try:
                    r = clients[at].request(
                        "POST",
                        f"/v1/topics/{self.s.topic}/records",
                        json=body,
                        headers={"Idempotency-Key": key},
                        timeout=60,
                    )
                    status = f"{r.status_code} {_code(r)}".strip()
                except httpx.HTTPError as exc:
                    r, status = None, type(exc).__name__
                with self._lock:
                    self.statuses[status] += 1
                if r is not None and r.status_code == 200:
                    self.acked[key] = time.monotonic()
                    break
                self.refusal_s.append(time.monotonic() - t0)
                if len(clients) > 1 and (r is None or r.status_code >= 500):
                    at = (at + 1) % len(clients)  # that instance is down or failing: the next
                    with self._lock:
                        self.failovers += 1
                if self._stop.is_set():
                    stopped_at = stopped_at or time.monotonic()
                    if time.monotonic() - stopped_at > self.retry_for_s:
                        self.stuck.append(key)
                        break
                time.sleep(0.2)
        for c in clients:
            c.close()

    def _deliver(self) -> None:
        clients = self._clients(self.s.subscriber)
        at = 0
        while not self._done.is_set():
            c = clients[at]
            try:
                page = c.poll(self.sub, max=200, wait_ms=500)
                keys = [str(r["key"]) for r in page["records"]]
                if keys:
                    fresh = any(k not in self.delivered for k in keys)
                    self.delivered.update(keys)
                    if fresh:
                        self.delivery_at.append(time.monotonic())
                    c.commit(self.sub, page["cursor"])
            except Exception:  # the instance is down or refusing: retry (elsewhere)
                if len(clients) > 1:
                    at = (at + 1) % len(clients)
                    with self._lock:
                        self.failovers += 1
                time.sleep(0.2)
        for c in clients:
            c.close()


def _code(r: httpx.Response) -> str:
    try:
        return str(r.json().get("code", ""))
    except ValueError:
        return ""


def load_for(s: Scenario, urls: list[str], **kw: Any) -> Load:
    """Grant the subscriber and subscribe from the start, then a ``Load`` (not started)."""
    from tests.support.scenario import grant

    grant(s, ["name"])
    sub = s.subscriber.subscribe(s.topic)
    return Load(s, sub, urls, **kw)
