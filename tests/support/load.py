"""Continuous publish + delivery against one or more gateway URLs, counted for fault tests.

Publishers send batches with an Idempotency-Key and, like a careful client, retry the same
key (on the next URL when there are several: failover behind a load balancer) until it is
answered 200; a subscriber polls and commits all along (long-poll), and with ``sse=True`` a
second subscription of the same subscriber follows a Server-Sent-Events stream, resuming with
``Last-Event-ID`` after a break. Afterwards ``report()`` compares what was acknowledged with
what each consumer delivered: lost, duplicates before dedupe, stuck keys, the longest delivery
stall, and every status code seen (a 500 or a hang is a finding)."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
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
    sse_sub: str | None = None  # a second subscription, consumed over SSE
    retry_for_s: float = 120.0  # a key unanswered this long after stop() is stuck
    acked: dict[str, float] = field(default_factory=dict)  # key → when answered 200
    statuses: Counter[str] = field(default_factory=Counter)  # "503 dependency_unavailable"
    refusal_s: list[float] = field(default_factory=list)  # how long each non-200 answer took
    stuck: list[str] = field(default_factory=list)
    delivered: Counter[str] = field(default_factory=Counter)  # record key → times delivered
    delivery_at: list[float] = field(default_factory=list)  # when a page brought new keys
    sse_delivered: Counter[str] = field(default_factory=Counter)
    sse_at: list[float] = field(default_factory=list)
    sse_resumes: int = 0  # streams re-opened with Last-Event-ID after a break
    bodies: dict[str, Any] = field(default_factory=dict)  # key → the batch sent under it
    answers: dict[str, Any] = field(default_factory=dict)  # key → its first 200 body
    replayed: int = 0  # 200s marked Idempotent-Replayed (the batch had committed before)
    failovers: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sse_response: httpx.Response | None = None

    def start(self) -> Load:
        for n in range(self.publishers):
            self._threads.append(threading.Thread(target=self._publish, args=(n,), daemon=True))
        self._threads.append(threading.Thread(target=self._deliver, daemon=True))
        if self.sse_sub is not None:
            self._threads.append(threading.Thread(target=self._stream, daemon=True))
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
        for t in self._threads[: self.publishers]:
            t.join(self.retry_for_s + 30)
        wanted = self.wanted()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (
            wanted <= set(self.delivered)
            and (self.sse_sub is None or wanted <= set(self.sse_delivered))
        ):
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._done.set()
        stream = self._sse_response
        if stream is not None:  # wake the SSE reader now, not at the next keep-alive (15 s):
            # closing a socket does not wake a thread blocked reading it; shutting it down does
            sock = stream.extensions["network_stream"].get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(30)

    def wanted(self) -> set[str]:
        return {f"{k}-{j}" for k in list(self.acked) for j in range(PER_BATCH)}

    def report(self, stall_from: float | None = None) -> dict[str, Any]:
        """Counts for the long-poll consumer (and, with SSE, ``sse_*`` for the stream);
        ``lost`` and ``unacknowledged_delivered`` cover both consumers."""
        wanted = self.wanted()
        out: dict[str, Any] = {
            "acknowledged": len(self.acked),
            "records_acknowledged": len(wanted),
            "replayed": self.replayed,
        }
        consumers = {"": (self.delivered, self.delivery_at)}
        if self.sse_sub is not None:
            consumers["sse_"] = (self.sse_delivered, self.sse_at)
        lost: set[str] = set()
        extra: set[str] = set()
        for prefix, (got, at) in consumers.items():
            times = sorted(at)
            if stall_from is not None:
                times = [stall_from, *[t for t in times if t >= stall_from]]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            out |= {
                f"{prefix}delivered": len(set(got) & wanted),
                f"{prefix}duplicates_before_dedupe": sum(n - 1 for n in got.values() if n > 1),
                f"{prefix}stall_s": round(max(gaps, default=0.0), 1),
            }
            lost |= wanted - set(got)
            extra |= set(got) - wanted
        if self.sse_sub is not None:
            out["sse_resumes"] = self.sse_resumes
        return out | {
            "lost": len(lost),
            "unacknowledged_delivered": len(extra),
            "stuck_keys": len(self.stuck),
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
            self.bodies[key] = body
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
                    with self._lock:
                        self.acked[key] = time.monotonic()
                        self.answers.setdefault(key, r.json())
                        self.replayed += r.headers.get("Idempotent-Replayed") == "true"
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

    def _stream(self) -> None:
        """Follow ``sse_sub`` over SSE; after any break re-open it with the last event id
        (on the next URL when there are several)."""
        assert self.sse_sub is not None
        clients = self._clients(self.s.subscriber)
        at, last = 0, None
        while not self._done.is_set():
            c = clients[at]
            try:
                headers = {"Authorization": f"Bearer {c.token()}", "Accept": "text/event-stream"}
                if last is not None:
                    headers["Last-Event-ID"] = last
                with c.http.stream(
                    "GET",
                    f"/v1/subscriptions/{self.sse_sub}/stream",
                    headers=headers,
                    timeout=httpx.Timeout(30, read=20),  # keep-alive comes every 15 s
                ) as r:
                    self._sse_response = r
                    if r.status_code != 200:
                        raise httpx.HTTPStatusError("stream refused", request=r.request, response=r)
                    self.sse_resumes += last is not None
                    event: dict[str, str] = {}
                    for line in r.iter_lines():
                        if self._done.is_set():
                            break
                        if line:
                            name, _, value = line.partition(":")
                            event[name] = value.removeprefix(" ")
                            continue
                        if event.get("event") == "record":
                            key = str(json.loads(event["data"])["key"])
                            with self._lock:
                                if key not in self.sse_delivered:
                                    self.sse_at.append(time.monotonic())
                                self.sse_delivered[key] += 1
                            last = event["id"]
                        event = {}
            except Exception:  # the instance died or refused: re-open (elsewhere)
                if len(clients) > 1:
                    at = (at + 1) % len(clients)
                time.sleep(0.2)
        for c in clients:
            c.close()


def _code(r: httpx.Response) -> str:
    try:
        return str(r.json().get("code", ""))
    except ValueError:
        return ""


def load_for(s: Scenario, urls: list[str], *, sse: bool = False, **kw: Any) -> Load:
    """Grant the subscriber and subscribe from the start (twice with ``sse``: one
    subscription pulled, one streamed), then a ``Load`` (not started)."""
    from tests.support.scenario import grant

    grant(s, ["name"])
    sub = s.subscriber.subscribe(s.topic)
    streamed = s.subscriber.subscribe(s.topic) if sse else None
    return Load(s, sub, urls, sse_sub=streamed, **kw)
