"""Token buckets with an injected clock: no sleeping."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from gateway.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    rl = RateLimiter(2.0, 3, clock=clock)
    assert [rl.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.check("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert rl.check("a") == 0.0
    assert rl.check("b") == 0.0  # buckets are per key


def test_refill_never_exceeds_the_burst() -> None:
    clock = Clock()
    rl = RateLimiter(10.0, 2, clock=clock)
    clock.now += 1000
    assert [rl.check("a") == 0.0 for _ in range(3)] == [True, True, False]


def test_enforce_raises_429_with_retry_after_in_whole_seconds() -> None:
    clock = Clock()
    rl = RateLimiter(0.25, 1, clock=clock)
    rl.enforce("a")
    with pytest.raises(HTTPException) as err:
        rl.enforce("a")
    assert err.value.status_code == 429
    assert err.value.headers == {"Retry-After": "4"}


def test_bucket_count_is_bounded() -> None:
    rl = RateLimiter(1.0, 1, clock=Clock(), max_buckets=2)
    for key in ("a", "b", "c"):
        rl.check(key)
    assert rl.check("a") == 0.0  # "a" was evicted, so it starts with a full bucket again


def test_rejects_nonsense_configuration() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1)
