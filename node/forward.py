"""The forwarder: the outbox, in order, to the site's gateway, one sealed batch at a time.

Each batch is sent as ``POST /v1/topics/{topic}/records`` gzip-compressed with
``Idempotency-Key: node-<node id>-<batch id>``. The batch's records and key are fixed in the
database before the first attempt, so every retry — after a cut, a timeout, a crash of the
node — is the same request, and the site answers it once: published, or (when it already
was) the first answer again (``Idempotent-Replayed``). Only then is the batch deleted.

Answers, and what the forwarder does:
- 200: delivered (replayed or not); next batch.
- 422 ``invalid_records`` naming records (the node has no schema registry, the site judges
  values): those records move to the dead letters, the rest is sealed again as a new batch.
- 400/403/404/413/415/422 otherwise: the site refuses the batch for good; its records move to
  the dead letters (kept, shown by ``exchange node status``) and forwarding goes on.
- 409 "in progress" (an earlier attempt still running at the site), 401 (token), 429, 5xx,
  no answer at all: retried after an exponential backoff with jitter; nothing is lost.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time
from collections.abc import Callable

from node.store import Batch, Store
from node.uplink import Answer, LinkDown, Uplink

log = logging.getLogger(__name__)
AVRO = "application/vnd.exchange.avro"
_FOR_GOOD = {400, 403, 404, 413, 415, 422}


def idempotency_key(node_id: str, batch: Batch) -> str:
    return f"node-{node_id}-b{batch.id}"


def body_of(batch: Batch, payloads: list[bytes]) -> tuple[bytes, str]:
    """The exact request body of a batch (the same bytes on every attempt)."""
    if batch.kind == "avro":
        return b"".join(payloads), AVRO
    return (
        b'{"records":[' + b",".join(payloads) + b'],"schema_version":'
        + batch.version.encode() + b"}",
        "application/json",
    )


class Backoff:
    """Exponential backoff with equal jitter: half the step fixed, half random."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.attempt = 0
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    def next(self) -> float:
        step = min(self.cap, self.base * 2.0 ** min(self.attempt, 60))
        self.attempt += 1
        return step / 2 + self.rng.uniform(0, step / 2)

    def reset(self) -> None:
        self.attempt = 0


class Pacer:
    """An optional bandwidth cap: after sending n bytes, the next send waits n/rate seconds."""

    def __init__(self, rate: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.ready_at = 0.0

    def wait_for(self, n: int) -> float:
        """Seconds to wait before sending ``n`` bytes (and books them)."""
        if self.rate is None:
            return 0.0
        now = self.clock()
        start = max(now, self.ready_at)
        self.ready_at = start + n / self.rate
        return start - now


class Forwarder:
    def __init__(
        self,
        store: Store,
        uplink: Uplink,
        *,
        node_id: str,
        batch_records: int,
        batch_bytes: int,
        backoff: Backoff,
        pacer: Pacer,
    ) -> None:
        self.store = store
        self.uplink = uplink
        self.node_id = node_id
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.backoff = backoff
        self.pacer = pacer
        self.wake = threading.Event()  # set by a local publish

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                delay = self.step()
            except Exception as exc:  # never die: the outbox keeps everything meanwhile
                log.warning("forwarder: %s", type(exc).__name__)
                self._error(f"internal: {type(exc).__name__}")
                delay = self.backoff.next()
            if delay is None:
                self.wake.wait(timeout=1.0)
                self.wake.clear()
            elif delay > 0:
                stop.wait(delay)

    def step(self) -> float | None:
        """One attempt at the head batch: None when the outbox is empty, else the seconds to
        wait before the next attempt (0: go on at once)."""
        batch = self.store.next_batch(self.batch_records, self.batch_bytes)
        if batch is None:
            return None
        body, ctype = body_of(batch, self.store.payloads(batch))
        wire = gzip.compress(body, compresslevel=6, mtime=0)
        if (pause := self.pacer.wait_for(len(wire))) > 0:
            time.sleep(pause)
        try:
            answer = self.uplink.publish(
                batch.topic, wire, ctype, idempotency_key(self.node_id, batch)
            )
        except LinkDown as exc:
            self._error(f"uplink down: {exc}")
            return self.backoff.next()
        return self._settle(batch, answer)

    def _settle(self, batch: Batch, answer: Answer) -> float:
        now = time.time()
        if answer.status == 200:
            replayed = answer.headers.get("idempotent-replayed") == "true"
            self.store.delivered(batch, replayed=replayed)
            self.store.set_meta(last_contact=now, last_delivered=now)
            self.backoff.reset()
            return 0.0
        detail = _detail(answer)
        different = answer.status == 409 and "different request" in detail
        if bad := _invalid_indexes(answer):
            self.store.rejected_records(batch, bad, answer.status, detail)
            self.store.set_meta(last_contact=now)
            self._error(f"{len(bad)} records of batch {batch.id} refused by the site "
                        f"({answer.status}): {detail}")
            return 0.0
        if answer.status in _FOR_GOOD or different:
            self.store.rejected(batch, answer.status, detail)
            self.store.set_meta(last_contact=now)
            self._error(f"batch {batch.id} refused by the site ({answer.status}): {detail}")
            return 0.0
        self.store.set_meta(last_contact=now)
        self._error(f"site answered {answer.status}: {detail}")
        retry_after = answer.headers.get("retry-after", "")
        wait = self.backoff.next()
        return max(wait, float(retry_after)) if retry_after.isdigit() else wait

    def _error(self, text: str) -> None:
        try:
            self.store.set_meta(last_error=text, last_error_at=time.time())
        except Exception:  # the outbox itself may be what fails
            log.warning("forwarder: cannot record the error")


def _invalid_indexes(answer: Answer) -> set[int]:
    """The records a 422 ``invalid_records`` names (empty: refuse the batch as a whole)."""
    body = answer.body
    if answer.status != 422 or not isinstance(body, dict) or body.get("code") != "invalid_records":
        return set()
    found = {e.get("index") for e in body.get("errors") or [] if isinstance(e, dict)}
    return {i for i in found if isinstance(i, int)}


def _detail(answer: Answer) -> str:
    if isinstance(answer.body, dict):
        return str(answer.body.get("code") or "") + ": " + str(answer.body.get("detail") or "")
    return json.dumps(answer.body)[:300]
