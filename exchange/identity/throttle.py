"""Failure throttling for client authentication: per client id, per address, per pair.

Each key (``client:<id>``, ``address:<ip>``, ``pair:<id>@<ip>``) may fail a few times for free;
failures leak away at a fixed pace, and each failure beyond the free ones locks the key for
twice as long as the one before (capped). A locked key is refused *before* the secret is
hashed, so a flood of wrong secrets costs the gateway almost nothing, and once an address has
failed, a cap on its concurrent checks bounds the hashing it can start before its lockout.

Not starving the legitimate client: a client id that authenticated from an address recently
(a *known pair*) passes the client and address locks as long as the pair itself has not been
failing — so an attacker who locks a client id, or floods from a shared NAT address, does not
lock out the real client where it usually connects from. A success clears the client's and the
pair's count, never the address's (a valid credential must not buy fresh tries).

State lives in this process's memory. With several gateway replicas each keeps its own count:
an attacker spreading over N replicas gets N times the tries, and each replica's backoff still
grows exponentially.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 100_000  # bounds memory: keys come from untrusted input
KNOWN_PAIR_S = 3600.0  # a success keeps a client id + address pair trusted this long


@dataclass(frozen=True)
class Policy:
    free: int  # failures tolerated before any lockout
    leak_s: float  # one failure is forgotten per this many seconds
    base_s: float = 1.0  # first lockout
    max_s: float = 300.0  # longest lockout
    max_inflight: int = 0  # concurrent checks allowed (0 = no cap)


CLIENT = Policy(free=5, leak_s=60.0)
# Addresses get more room (a department's clients may share one NAT) but leak faster.
ADDRESS = Policy(free=30, leak_s=2.0, max_inflight=4)
PAIR = Policy(free=3, leak_s=60.0)
POLICIES = {"client": CLIENT, "address": ADDRESS, "pair": PAIR}


@dataclass(frozen=True)
class Attempt:
    """The keys one authentication attempt counts against."""

    client: str
    address: str
    pair: str

    @classmethod
    def of(cls, client_id: str, address: str) -> Attempt:
        return cls(f"client:{client_id}", f"address:{address}", f"pair:{client_id}@{address}")

    @property
    def keys(self) -> tuple[str, str, str]:
        return (self.client, self.address, self.pair)


@dataclass
class _State:
    failures: float = 0.0
    updated: float = 0.0
    locked_until: float = 0.0
    inflight: int = 0


@dataclass(frozen=True)
class Lockout:
    """A key just became locked: worth an audit event."""

    key: str
    failures: int
    seconds: float


def lock_seconds(policy: Policy, failures: float) -> float:
    """How long this many (leaked) failures lock a key; 0 = not at all."""
    over = math.ceil(failures - 1e-9) - policy.free  # a partly leaked failure still counts
    if over <= 0:
        return 0.0
    return min(policy.max_s, policy.base_s * 2.0 ** min(over - 1, 62))


class FailureThrottle:
    """Thread-safe (authentication runs in worker threads); the clock is injected for tests."""

    def __init__(
        self,
        policies: dict[str, Policy] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.policies = policies or POLICIES
        self._clock = clock
        self._max = max_keys
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._known: OrderedDict[str, float] = OrderedDict()  # pair key -> trusted until
        self._lock = threading.Lock()

    def _policy(self, key: str) -> Policy:
        return self.policies[key.partition(":")[0]]

    def _state(self, key: str, now: float) -> _State:
        st = self._states.pop(key, None) or _State(updated=now)
        self._states[key] = st  # most recently used last
        if len(self._states) > self._max:
            self._evict()
        leaked = (now - st.updated) / self._policy(key).leak_s
        st.failures, st.updated = max(0.0, st.failures - leaked), now
        return st

    def _evict(self) -> None:
        for key, st in self._states.items():
            if st.inflight == 0:  # a check in progress keeps its state until it finishes
                del self._states[key]
                return

    def _is_known(self, attempt: Attempt, now: float, pair: _State) -> bool:
        until = self._known.get(attempt.pair, 0.0)
        return until > now and lock_seconds(self._policy(attempt.pair), pair.failures + 1) == 0

    def admit(self, attempt: Attempt) -> float:
        """0.0: admitted (call :meth:`finish` after it); else the seconds to wait. A refused
        attempt is not counted."""
        with self._lock:
            now = self._clock()
            states = {k: self._state(k, now) for k in attempt.keys}
            guarding = [attempt.pair]
            if not self._is_known(attempt, now, states[attempt.pair]):
                guarding += [attempt.client, attempt.address]
            wait = max(states[k].locked_until - now for k in guarding)
            if wait > 0:
                return wait
            for k in guarding:
                # Only a key that has been failing is capped: a clean address (many new
                # clients of one department starting at once) never waits.
                cap, st = self._policy(k).max_inflight, states[k]
                if cap and st.failures > 0 and st.inflight >= cap:
                    return 1.0
            for st in states.values():
                st.inflight += 1
            return 0.0

    def finish(self, attempt: Attempt, ok: bool | None) -> list[Lockout]:
        """Record an admitted attempt's outcome (None: it had none, e.g. the store failed);
        the lockouts it started."""
        locked: list[Lockout] = []
        with self._lock:
            now = self._clock()
            for key in attempt.keys:
                st = self._state(key, now)
                st.inflight = max(0, st.inflight - 1)
                if ok and key != attempt.address:
                    st.failures, st.locked_until = 0.0, 0.0
                elif ok is False:
                    st.failures += 1
                    if seconds := lock_seconds(self._policy(key), st.failures):
                        st.locked_until = now + seconds
                        locked.append(Lockout(key, math.ceil(st.failures - 1e-9), seconds))
            if ok:
                self._known.pop(attempt.pair, None)
                self._known[attempt.pair] = now + KNOWN_PAIR_S
                if len(self._known) > self._max:
                    self._known.popitem(last=False)
        return locked
