"""Per-client token-bucket rate limits; 429 problem+json with ``Retry-After`` when exceeded.

Buckets live in this process's memory: with several gateway instances each enforces its own
limit (the effective limit is ``instances * rate``). That is acceptable for abuse protection;
a shared store would be needed for exact global quotas.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException

MAX_BUCKETS = 100_000  # bounds memory when keys come from untrusted input (peer addresses)


@dataclass
class Bucket:
    tokens: float
    updated: float


def take(bucket: Bucket, now: float, rate: float, burst: float) -> float:
    """Spend one token; 0.0 if allowed, else the seconds until a token will be available."""
    bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
    bucket.updated = now
    if bucket.tokens >= 1.0:
        bucket.tokens -= 1.0
        return 0.0
    return (1.0 - bucket.tokens) / rate


class RateLimiter:
    """Token buckets keyed by caller; thread-safe (sync dependencies run in a thread pool)."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate limit must be positive with a burst of at least 1")
        self.rate = rate_per_second
        self.burst = float(burst)
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str) -> float:
        """0.0 if ``key`` may proceed now, else the seconds it has to wait."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.pop(key, None) or Bucket(self.burst, now)
            self._buckets[key] = bucket  # most recently used last
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return take(bucket, now, self.rate, self.burst)

    def enforce(self, key: str) -> None:
        """Raise 429 with ``Retry-After`` (whole seconds, at least 1) when over the limit."""
        wait = self.check(key)
        if wait > 0:
            raise HTTPException(
                status_code=429,
                detail="rate limit exceeded; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
