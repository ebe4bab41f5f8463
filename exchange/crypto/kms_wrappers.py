"""Wrappers around any KMS: a bounded TTL cache of unwrapped DEKs, and call metrics.

Neither keeps nor reports key material beyond the cache itself: metrics are counts and
seconds per operation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cachetools import TTLCache

from exchange import metrics
from exchange.crypto.kms import KekRef, Kms

T = TypeVar("T")


class CachingKms:
    """Caches ``unwrap`` results: at most ``max_entries`` DEKs, each for ``ttl_seconds``."""

    def __init__(self, inner: Kms, *, max_entries: int = 10_000, ttl_seconds: float = 300) -> None:
        self.inner = inner
        self._cache: TTLCache[tuple[KekRef, bytes], bytes] = TTLCache(max_entries, ttl_seconds)
        self._lock = threading.Lock()

    def create_kek(self, alias: str) -> KekRef:
        return self.inner.create_kek(alias)

    def current_kek(self, alias: str) -> KekRef:
        return self.inner.current_kek(alias)

    def wrap(self, kek: KekRef, dek: bytes) -> bytes:
        return self.inner.wrap(kek, dek)

    def unwrap(self, kek: KekRef, wrapped: bytes) -> bytes:
        with self._lock:
            hit = self._cache.get((kek, wrapped))
        metrics.KMS_CACHE.labels("miss" if hit is None else "hit").inc()
        if hit is not None:
            return hit
        dek = self.inner.unwrap(kek, wrapped)
        with self._lock:
            self._cache[(kek, wrapped)] = dek
        return dek

    def forget(self, kek: KekRef, wrapped: bytes) -> None:
        with self._lock:
            self._cache.pop((kek, wrapped), None)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def ping(self) -> bool:
        return self.inner.ping()


@dataclass
class OpStats:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0


@dataclass
class KmsMetrics:
    ops: dict[str, OpStats] = field(default_factory=dict)

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {
            k: {"calls": v.calls, "errors": v.errors, "seconds": v.seconds}
            for k, v in self.ops.items()
        }


class MeteredKms:
    """Counts calls, errors and time per KMS operation."""

    def __init__(self, inner: Kms, metrics: KmsMetrics | None = None) -> None:
        self.inner = inner
        self.metrics = metrics or KmsMetrics()
        self._lock = threading.Lock()

    def _timed(self, op: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        ok = False
        try:
            result = fn()
            ok = True
            return result
        finally:
            took = time.perf_counter() - start
            with self._lock:
                s = self.metrics.ops.setdefault(op, OpStats())
                s.calls += 1
                s.errors += 0 if ok else 1
                s.seconds += took
            metrics.KMS_CALLS.labels(op, "ok" if ok else "error").inc()
            metrics.KMS_SECONDS.labels(op).observe(took)

    def create_kek(self, alias: str) -> KekRef:
        return self._timed("create_kek", lambda: self.inner.create_kek(alias))

    def current_kek(self, alias: str) -> KekRef:
        return self._timed("current_kek", lambda: self.inner.current_kek(alias))

    def wrap(self, kek: KekRef, dek: bytes) -> bytes:
        return self._timed("wrap", lambda: self.inner.wrap(kek, dek))

    def unwrap(self, kek: KekRef, wrapped: bytes) -> bytes:
        return self._timed("unwrap", lambda: self.inner.unwrap(kek, wrapped))

    def ping(self) -> bool:
        result: Any = self._timed("ping", self.inner.ping)
        return bool(result)
