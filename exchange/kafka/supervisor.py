"""``exchange up`` keeps its embedded broker running: a broker that dies is restarted.

A crash is a broker whose state file is left behind with a dead pid (``exchange kafka stop``
removes the file: an operator's stop is respected, not undone). Each crash, or failed restart,
is logged and retried after a back-off that doubles from ``backoff_s`` up to
``backoff_max_s``; after ``give_up_after`` failures within ``rapid_window_s`` the supervisor
stops trying and says why, rather than restarting a broker that cannot run (a full disk, a
corrupt log) forever. :attr:`state` is shown by ``/readyz``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from exchange.errors import ExchangeError
from exchange.kafka.broker import LocalBroker

log = logging.getLogger(__name__)

UP, RESTARTING, STOPPED, FAILED = "up", "restarting", "stopped", "failed"


class BrokerSupervisor:
    def __init__(
        self,
        broker: LocalBroker,
        *,
        check_s: float = 0.5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        give_up_after: int = 5,
        rapid_window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.check_s, self.backoff_s, self.backoff_max_s = check_s, backoff_s, backoff_max_s
        self.give_up_after, self.rapid_window_s, self.clock = give_up_after, rapid_window_s, clock
        self.state = UP
        self.restarts = 0
        self.reason: str | None = None  # why it is not up
        self._failures: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="broker-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def status(self) -> str:
        return self.state

    def _run(self) -> None:
        while not self._stop.wait(self.check_s):
            if self.state == FAILED:
                return
            crash = self.broker.crashed()
            if crash is not None:
                pid, how = crash
                self._recover(f"Kafka broker (pid {pid}) {how}")
            elif self.broker.state() is None:
                if self.state != STOPPED:
                    log.warning("Kafka broker was stopped (not a crash): not restarting it")
                self.state, self.reason = STOPPED, "stopped by an operator"
            elif self.state == STOPPED:
                log.warning("Kafka broker is running again")
                self.state, self.reason = UP, None

    def _recover(self, what: str) -> None:
        """Restart until it runs, backing off; give up after too many rapid failures."""
        delay = self.backoff_s
        while not self._stop.is_set():
            now = self.clock()
            self._failures = [t for t in self._failures if now - t < self.rapid_window_s]
            self._failures.append(now)
            if len(self._failures) >= self.give_up_after:
                self.state = FAILED
                self.reason = (
                    f"{what}; gave up after {len(self._failures)} failures within "
                    f"{self.rapid_window_s:.0f}s: see {self.broker.log_file}, then restart "
                    "`exchange up` (or run `exchange kafka start`)"
                )
                log.error("%s", self.reason)
                return
            self.state, self.reason = RESTARTING, what
            log.warning(
                "%s; restarting it in %.1fs (failure %d of %d allowed within %.0fs)",
                what, delay, len(self._failures), self.give_up_after - 1, self.rapid_window_s,
            )  # fmt: skip
            if self._stop.wait(delay):
                return
            t0 = self.clock()
            try:
                st = self.broker.restart()
            except ExchangeError as exc:
                what = f"Kafka broker restart failed: {exc.message}"
                delay = min(delay * 2, self.backoff_max_s)
                continue
            log.warning(
                "Kafka broker restarted (pid %d, %s) in %.1fs; restarts so far: %d",
                st.pid, st.bootstrap, self.clock() - t0, self.restarts + 1,
            )  # fmt: skip
            self.restarts += 1  # after the log line: observers see both or neither
            self.state, self.reason = UP, None
            return
