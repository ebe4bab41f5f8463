"""Key ages for monitoring: how old the keys in use are and when they are due for rotation.

Exported as ``exchange_key_age_seconds{kind}`` and ``exchange_key_expiry_seconds{kind}``
(``deploy/prometheus/alerts.yml`` warns before a key is due), refreshed in the background
every ``interval_s``: the token signing key (the newest active one) and the oldest active
data-encryption key against the rotation policy's maximum age.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from exchange import metrics
from exchange.crypto.models import DekVersionRow
from exchange.db import transaction
from exchange.identity.models import SigningKeyRow

log = logging.getLogger(__name__)


def key_ages(
    sessions: sessionmaker[Session], dek_max_age: timedelta | None, now: datetime
) -> dict[str, tuple[float, float | None]]:
    """kind -> (age in seconds, seconds until due for rotation or None)."""
    out: dict[str, tuple[float, float | None]] = {}
    with transaction(sessions) as s:
        signing = s.scalar(
            select(func.max(SigningKeyRow.created_at)).where(SigningKeyRow.status == "active")
        )
        oldest_dek = s.scalar(
            select(func.min(DekVersionRow.created_at)).where(DekVersionRow.state == "active")
        )
    if signing is not None:
        out["token_signing"] = ((now - _utc(signing)).total_seconds(), None)
    if oldest_dek is not None:
        age = (now - _utc(oldest_dek)).total_seconds()
        due = None if dek_max_age is None else dek_max_age.total_seconds() - age
        out["data_encryption"] = (age, due)
    return out


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class KeyAgeReporter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        dek_max_age: timedelta | None,
        *,
        interval_s: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions, self.dek_max_age, self.interval_s = sessions, dek_max_age, interval_s
        self.clock = clock
        self._stop = threading.Event()

    def refresh(self) -> None:
        for kind, (age, due) in key_ages(self.sessions, self.dek_max_age, self.clock()).items():
            metrics.KEY_AGE_SECONDS.labels(kind).set(age)
            if due is not None:
                metrics.KEY_EXPIRY_SECONDS.labels(kind).set(due)

    def start(self) -> None:
        threading.Thread(target=self._run, name="key-ages", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception as exc:  # monitoring never takes the gateway down
                log.debug("key age refresh failed: %s", type(exc).__name__)
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
