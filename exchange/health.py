"""Dependency health, probed in the background so that asking never waits.

Each dependency has its own prober thread: it runs the probe, records the answer, sleeps
``interval_s``, and repeats. A probe that has not answered within ``bound_s`` counts as down
(a broker that hangs connections, a database another process holds locked), so readiness
answers at once and publishes fail fast instead of waiting out client timeouts.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from exchange import metrics

log = logging.getLogger(__name__)

Probe = Callable[[], bool]


@dataclass
class _State:
    ok: bool | None = None  # None: no answer yet
    started: float | None = None  # a probe in flight since
    answered: float = 0.0


class HealthMonitor:
    def __init__(
        self,
        probes: Mapping[str, Probe],
        *,
        reported: Mapping[str, Callable[[], str]] | None = None,
        interval_s: float = 1.0,
        bound_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probes = dict(probes)
        # Dependencies that report their own state word (the supervised broker: "up",
        # "restarting", "stopped", "failed"): read as they are, never probed.
        self.reported = dict(reported or {})
        self.interval_s, self.bound_s, self.clock = interval_s, bound_s, clock
        self._states = {name: _State() for name in self.probes}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name in self.probes:
            t = threading.Thread(target=self._run, args=(name,), name=f"health-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()  # probers are daemons: one stuck in a probe is not waited for

    def status(self) -> dict[str, str]:
        """Per dependency: "up", "down", or "unknown" (not answered yet)."""
        with self._lock:
            words = {name: self._word(s) for name, s in self._states.items()}
        return words | {name: get() for name, get in self.reported.items()}

    def down(self, name: str) -> bool:
        """Known to be down now (the last answer said so, or a probe is overdue)."""
        if name in self.reported:
            return self.reported[name]() != "up"
        with self._lock:
            return self._word(self._states[name]) == "down"

    def _word(self, s: _State) -> str:
        if s.started is not None and self.clock() - s.started > self.bound_s:
            return "down"  # hung: as good as refused
        if s.ok is None:
            return "unknown"
        return "up" if s.ok else "down"

    def _run(self, name: str) -> None:
        probe = self.probes[name]
        while not self._stop.is_set():
            with self._lock:
                self._states[name].started = self.clock()
            try:
                ok = bool(probe())
            except Exception as exc:  # a probe that raises reports down
                log.debug("health probe %s failed: %s", name, type(exc).__name__)
                ok = False
            with self._lock:
                s = self._states[name]
                if s.ok is not None and s.ok != ok:
                    log.warning("dependency %s is %s", name, "up" if ok else "down")
                s.ok, s.started, s.answered = ok, None, self.clock()
            metrics.DEPENDENCY_UP.labels(name).set(1 if ok else 0)
            self._stop.wait(self.interval_s)


# Below this much free space on its filesystem a SQLite control plane counts as down: a
# publish (idempotency claim, audit index, journal) needs a few pages, and taking the write
# lock alone writes nothing, so a full disk would otherwise read as healthy.
SQLITE_MIN_FREE_BYTES = 1 << 20


def database_writable(engine: Engine, wait_s: float = 1.0) -> bool:
    """Whether a write could start now. On SQLite this takes the write lock (and lets it go),
    so a database another process holds locked reads as down, not just one that is gone; and
    a database whose disk is (nearly) full reads as down too."""
    try:
        with engine.connect() as conn:
            if engine.dialect.name != "sqlite":
                conn.execute(text("SELECT 1"))
                return True
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                conn.exec_driver_sql("ROLLBACK")
            finally:
                conn.exec_driver_sql("PRAGMA busy_timeout=30000")  # the pool's setting
        return _sqlite_has_room(engine)
    except SQLAlchemyError:
        return False


def _sqlite_has_room(engine: Engine) -> bool:
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return True  # in memory (tests) or a URI form: no file system to measure
    try:
        free = shutil.disk_usage(Path(path).resolve().parent).free
    except OSError:
        return False
    if free < SQLITE_MIN_FREE_BYTES:
        log.debug("control-plane database disk has %d bytes free", free)
        return False
    return True
