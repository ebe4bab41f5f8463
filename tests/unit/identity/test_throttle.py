"""Failure throttle, pure: free failures, exponential lockout, leak, known pairs, caps."""

from __future__ import annotations

import pytest

from exchange.identity.throttle import (
    ADDRESS,
    CLIENT,
    PAIR,
    Attempt,
    FailureThrottle,
    Policy,
    lock_seconds,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(t: FailureThrottle, a: Attempt) -> list[str]:
    assert t.admit(a) == 0.0
    return [lk.key for lk in t.finish(a, False)]


def test_lock_grows_exponentially_and_is_capped() -> None:
    p = Policy(free=2, leak_s=60, base_s=1, max_s=10)
    assert [lock_seconds(p, n) for n in range(1, 9)] == [0, 0, 1, 2, 4, 8, 10, 10]


def test_client_id_locks_after_its_free_failures_whatever_the_address() -> None:
    clock = Clock()
    t = FailureThrottle(clock=clock)
    for i in range(CLIENT.free):
        assert fail(t, Attempt.of("app", f"10.0.0.{i}")) == []
    assert fail(t, Attempt.of("app", "10.0.0.99")) == ["client:app"]
    assert t.admit(Attempt.of("app", "10.0.1.1")) == pytest.approx(CLIENT.base_s)
    # another client id from the same addresses is untouched
    assert t.admit(Attempt.of("other", "10.0.0.1")) == 0.0


def test_address_locks_when_spraying_many_client_ids() -> None:
    clock = Clock()
    t = FailureThrottle(clock=clock)
    locked: list[str] = []
    for i in range(ADDRESS.free + 1):
        locked += fail(t, Attempt.of(f"guess-{i}", "10.9.9.9"))
    assert locked == ["address:10.9.9.9"]
    assert t.admit(Attempt.of("fresh", "10.9.9.9")) > 0
    assert t.admit(Attempt.of("fresh", "10.9.9.8")) == 0.0


def test_refused_attempts_are_not_counted_and_locks_expire() -> None:
    clock = Clock()
    t = FailureThrottle(clock=clock)
    a = Attempt.of("app", "10.0.0.1")
    while not fail(t, a):
        pass
    wait = t.admit(a)
    assert wait > 0
    for _ in range(100):
        assert t.admit(a) > 0  # refused before any check: nothing to finish
    clock.now += wait
    assert t.admit(a) == 0.0
    assert t.finish(a, False)  # one more failure: a longer lock
    assert t.admit(a) == pytest.approx(2 * wait)


def test_failures_leak_away() -> None:
    clock = Clock()
    t = FailureThrottle(clock=clock)
    for _ in range(PAIR.free):
        fail(t, Attempt.of("app", "10.0.0.1"))
    clock.now += PAIR.leak_s * PAIR.free + 1
    assert fail(t, Attempt.of("app", "10.0.0.1")) == []


def test_a_known_pair_passes_a_lock_an_attacker_caused() -> None:
    clock = Clock()
    t = FailureThrottle(clock=clock)
    home = Attempt.of("app", "10.0.0.1")
    assert t.admit(home) == 0.0
    t.finish(home, True)
    for i in range(40):  # an attacker elsewhere locks the client id
        a = Attempt.of("app", f"10.6.6.{i}")
        if t.admit(a) == 0.0:
            t.finish(a, False)
    assert t.admit(Attempt.of("app", "10.0.0.2")) > 0  # a new place is locked out
    assert t.admit(home) == 0.0  # the real client where it lives is not
    t.finish(home, True)
    # but a known pair that keeps failing loses the privilege
    while t.admit(home) == 0.0:
        t.finish(home, False)
    assert t.admit(home) > 0


def test_success_does_not_clear_the_address() -> None:
    clock = Clock()
    t = FailureThrottle(clock=clock)
    for i in range(ADDRESS.free):
        fail(t, Attempt.of(f"guess-{i}", "10.9.9.9"))
    good = Attempt.of("mine", "10.9.9.9")
    assert t.admit(good) == 0.0
    t.finish(good, True)
    assert fail(t, Attempt.of("guess-x", "10.9.9.9")) == ["address:10.9.9.9"]


def test_concurrent_checks_of_a_failing_address_are_capped() -> None:
    t = FailureThrottle(clock=Clock())
    many = [Attempt.of(f"new-{i}", "10.0.0.1") for i in range(3 * ADDRESS.max_inflight)]
    assert all(t.admit(a) == 0.0 for a in many)  # a clean address: never capped
    for a in many:
        t.finish(a, True)
    fail(t, Attempt.of("guess", "10.0.0.1"))  # now it has failed once
    started = [Attempt.of(f"c{i}", "10.0.0.1") for i in range(ADDRESS.max_inflight)]
    assert all(t.admit(a) == 0.0 for a in started)
    assert t.admit(Attempt.of("one-more", "10.0.0.1")) == 1.0
    assert t.admit(Attempt.of("one-more", "10.0.0.2")) == 0.0
    t.finish(started[0], None)  # an outcome-less finish (store error) frees the slot
    assert t.admit(Attempt.of("one-more", "10.0.0.1")) == 0.0


def test_memory_is_bounded() -> None:
    t = FailureThrottle(clock=Clock(), max_keys=50)
    for i in range(500):
        fail(t, Attempt.of(f"g{i}", f"10.0.{i // 250}.{i % 250}"))
    assert len(t._states) <= 51
