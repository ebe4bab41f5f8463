"""The prefetcher: the department's subscriptions pulled ahead from the site into the node.

While the uplink is up, each configured subscription is long-polled at the site with the
department's credentials from the node's own upstream cursor; a page and the cursor after it
are stored in one transaction (so a crash neither loses nor repeats a page), then the cursor
is committed at the site too. Local applications read the stored records from the node with
the site's poll API shape and a local cursor, whether the link is up or not.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from node.forward import Backoff
from node.store import Store
from node.uplink import LinkDown, Uplink

log = logging.getLogger(__name__)


class Prefetcher:
    def __init__(
        self,
        store: Store,
        uplink: Uplink,
        subscriptions: list[str],
        *,
        max_records: int,
        backoff: Backoff,
        page: int = 500,
        wait_ms: int = 1000,
    ) -> None:
        self.store = store
        self.uplink = uplink
        self.subscriptions = subscriptions
        self.max_records = max_records
        self.backoff = backoff
        self.page = page
        self.wait_ms = wait_ms

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set() and self.subscriptions:
            delay = 0.0
            for sub in self.subscriptions:
                try:
                    delay = max(delay, self.step(sub))
                except Exception as exc:  # never die; the next round retries
                    log.warning("prefetch: %s", type(exc).__name__)
                    delay = self.backoff.next()
            if delay > 0:
                stop.wait(delay)

    def step(self, sub: str) -> float:
        """One pull for ``sub``; returns the seconds to wait before the next round."""
        if self.store.inbox_backlog(sub) >= self.max_records:
            return 1.0  # full: local consumers first (disk stays bounded)
        try:
            answer = self.uplink.pull(
                sub, self.store.upstream_cursor(sub), self.page, self.wait_ms
            )
        except LinkDown as exc:
            self._error(f"prefetch {sub}: uplink down: {exc}")
            return self.backoff.next()
        self.store.set_meta(last_contact=time.time())
        if answer.status != 200 or not isinstance(answer.body, dict):
            self._error(f"prefetch {sub}: site answered {answer.status}")
            return self.backoff.next()
        records, cursor = answer.body.get("records") or [], str(answer.body["cursor"])
        self.store.prefetched(sub, records, cursor)
        self.backoff.reset()
        if records:
            with contextlib.suppress(LinkDown):
                self.uplink.commit(sub, cursor)  # the site's view; ours is in the database
        return 0.0

    def _error(self, text: str) -> None:
        self.store.set_meta(last_prefetch_error=text, last_prefetch_error_at=time.time())
