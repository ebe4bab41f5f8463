"""A background thread that flags agreement requests whose response deadline has passed."""

from __future__ import annotations

import logging
import threading

from consent.agreements import Agreements
from exchange.errors import ExchangeError

log = logging.getLogger(__name__)


class OverdueFlagger:
    def __init__(self, agreements: Agreements, every_s: float) -> None:
        self.agreements = agreements
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agreements-overdue", daemon=True)

    def start(self) -> OverdueFlagger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                for a in self.agreements.flag_overdue():
                    log.info("agreement %s is overdue (respond by %s)", a.id, a.respond_by)
            except ExchangeError as exc:  # store down: try again next tick
                log.warning("overdue check failed: %s", exc.code)
