"""Key and certificate ages for monitoring: how old the keys in use are, when they are due
for rotation, and when the certificates the gateway trusts or presents expire.

Exported as ``exchange_key_age_seconds{kind}``, ``exchange_key_expiry_seconds{kind}`` and
``exchange_certificate_expiry_seconds{use}`` (``deploy/prometheus/alerts.yml`` warns before a
key is due or a certificate expires), refreshed in the background every ``interval_s``: the
token signing key (the newest active one), the oldest active data-encryption key against the
rotation policy's maximum age, and the earliest ``notAfter`` of each configured PEM file
(the Kafka TLS CA bundle and client certificate). The files are re-read each time, so a
renewed certificate shows at the next refresh (the Kafka clients load it at their restart).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
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


def certificate_expiry(pem: Path, now: datetime) -> float:
    """Seconds from ``now`` until the earliest ``notAfter`` among the certificates in ``pem``
    (a bundle may hold several; negative once one has expired). ValueError if it holds none."""
    certs = x509.load_pem_x509_certificates(pem.read_bytes())
    return min((c.not_valid_after_utc - now).total_seconds() for c in certs)


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class KeyAgeReporter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        dek_max_age: timedelta | None,
        *,
        certificates: dict[str, Path] | None = None,
        interval_s: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``certificates``: use (a fixed label, e.g. ``kafka_ca``) → PEM file to watch."""
        self.sessions, self.dek_max_age, self.interval_s = sessions, dek_max_age, interval_s
        self.certificates = dict(certificates or {})
        self.clock = clock
        self._stop = threading.Event()
        self._unreadable: set[str] = set()

    def refresh(self) -> None:
        now = self.clock()
        for use, pem in self.certificates.items():
            try:
                left = certificate_expiry(pem, now)
            except (OSError, ValueError) as exc:
                if use not in self._unreadable:  # said once, not every minute
                    why = type(exc).__name__
                    log.warning("cannot read the %s certificate %s: %s", use, pem, why)
                    self._unreadable.add(use)
                continue
            self._unreadable.discard(use)
            metrics.CERT_EXPIRY_SECONDS.labels(use).set(left)
        for kind, (age, due) in key_ages(self.sessions, self.dek_max_age, now).items():
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
