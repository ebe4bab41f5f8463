"""Stable transactional ids: one set per gateway slot, the same after a restart.

A Kafka transaction left open by a process that died holds back every ``read_committed``
reader of its partitions (the last stable offset stops there) until the broker aborts it: at
the transaction timeout, or at once when a producer with the *same* transactional id calls
``init_transactions`` (it fences the dead one and aborts its transaction). Random ids per
start would leave every crash blocking delivery for the whole timeout; ids derived from the
gateway's slot let the restarted gateway fence its predecessor immediately.

A slot is ``EXCHANGE_INSTANCE_ID`` when set (containers whose host name changes on every
start: use the StatefulSet pod name or similar), else the host name, the home directory and
the listen address hashed together: stable across restarts of one deployment, different for
any two gateways that can run at the same time. Two live gateways must never share a slot —
each would fence the other's transactions — so the gateway also holds a lock on the slot in
its home (:func:`claim_slot`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Generic, TypeVar

from exchange.errors import ConfigurationError, KafkaUnavailable

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class SlotTaken(ConfigurationError):
    """Another running gateway holds this transactional-id slot."""


def slot_prefix(
    instance_id: str | None,
    *,
    home: Path,
    listen_host: str,
    port: int,
    host_name: str | None = None,
) -> str:
    """The transactional-id prefix of one gateway slot (pure but for the host name)."""
    if instance_id:
        return f"exchange-{_SAFE.sub('_', instance_id)[:100]}"
    where = "|".join((host_name or socket.gethostname(), str(home), listen_host, str(port)))
    return f"exchange-gw{port}-{hashlib.sha256(where.encode()).hexdigest()[:16]}"


def transactional_id(prefix: str, slot: int) -> str:
    return f"{prefix}-tx{slot}"


def claim_slot(home: Path, prefix: str) -> IO[str]:
    """Lock ``prefix`` in ``home`` for as long as the returned file stays open (the process's
    life): a second gateway on this home configured with the same slot is refused at start.
    (Gateways on other machines are told apart by the host name in the default prefix; an
    explicit ``EXCHANGE_INSTANCE_ID`` must be unique per running gateway.)"""
    run = home / "run"
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    f = (run / f"{prefix}.lock").open("a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise SlotTaken(
            f"transactional-id slot {prefix} is in use by {holder}: two gateways must not share "
            "one (set a distinct EXCHANGE_INSTANCE_ID per gateway)"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


P = TypeVar("P")


class SlotPool(Generic[P]):
    """The transactional-producer slots both Kafka adapters keep (``_tx_slots`` bounds the
    producers in use, ``_tx_free`` are slots without a producer, ``_tx_idle`` slots with one);
    this part is the fencing, the same whichever client library makes the producer."""

    _lock: threading.Lock
    _tx_slots: threading.BoundedSemaphore
    _tx_free: list[int]
    _tx_idle: list[tuple[int, P]]

    def _new_transactional(self, slot: int) -> P:
        raise NotImplementedError

    def fence_transactions(self) -> int:
        """Open a producer on every free slot now: ``init_transactions`` aborts whatever a
        previous process with these ids left open, so ``read_committed`` readers go on at
        once instead of after the transaction timeout. Returns the slots still unfenced
        (Kafka unreachable: the caller retries)."""
        # A slot busy publishing went through init_transactions already.
        while self._tx_slots.acquire(blocking=False):
            try:
                with self._lock:
                    slot = self._tx_free.pop(0) if self._tx_free else None
                if slot is None:
                    break
                try:
                    producer = self._new_transactional(slot)
                except BaseException as exc:
                    with self._lock:
                        self._tx_free.append(slot)
                    if isinstance(exc, KafkaUnavailable):
                        break
                    raise
                with self._lock:
                    self._tx_idle.append((slot, producer))
            finally:
                self._tx_slots.release()
        with self._lock:
            return len(self._tx_free)


class Fencer:
    """Fences the previous process's transactions in the background at start-up (``fence``:
    :meth:`KafkaPort.fence_transactions`), retrying while Kafka is unreachable, so start-up
    never waits on Kafka."""

    def __init__(self, fence: Callable[[], int], retry_s: float = 1.0) -> None:
        self._fence = fence
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fenced_at: float | None = None  # monotonic time every slot was fenced

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kafka-fencer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            try:
                left = self._fence()
            except Exception as exc:  # logged and retried: never kills start-up
                log.warning("fencing previous Kafka transactions failed: %s", type(exc).__name__)
                left = -1
            if left == 0:
                self.fenced_at = time.monotonic()
                log.info("Kafka transactional slots ready in %.1fs", self.fenced_at - t0)
                return
            self._stop.wait(self._retry_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
