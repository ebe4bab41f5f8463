"""Publish idempotency: a key claimed before publishing, settled with the answer after.

A retry with the same key and body gets the first answer; the same key with another body is
a conflict; a retry while the first is still running is a conflict too (it may yet commit).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dataplane.models import IdempotencyRow
from exchange.db import transaction
from exchange.errors import Conflict, ExchangeError


def request_digest(body: bytes, topic: str) -> str:
    return hashlib.sha256(topic.encode() + b"\0" + body).hexdigest()


class IdempotencyStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def claim(self, client_id: str, key: str, request_hash: str) -> dict[str, Any] | None:
        """The stored answer of an earlier request with this key, or None to go ahead.
        Claims the key first so two concurrent retries cannot both publish."""
        with transaction(self.sessions) as s:
            row = self._row(s, client_id, key)
            if row is not None:
                if row.request_hash != request_hash:
                    raise Conflict("Idempotency-Key was used with a different request")
                if row.response is None:
                    raise Conflict("a request with this Idempotency-Key is in progress")
                return dict(row.response)
        try:
            with transaction(self.sessions) as s:
                s.add(
                    IdempotencyRow(
                        client_id=client_id,
                        key=key,
                        request_hash=request_hash,
                        response=None,
                        created_at=datetime.now(UTC),
                    )
                )
        except ExchangeError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise Conflict("a request with this Idempotency-Key is in progress") from exc
            raise
        return None

    def settle(self, client_id: str, key: str, response: dict[str, Any]) -> None:
        with transaction(self.sessions) as s:
            row = self._row(s, client_id, key)
            if row is not None:
                row.response = response

    def release(self, client_id: str, key: str) -> None:
        with transaction(self.sessions) as s:
            row = self._row(s, client_id, key)
            if row is not None:
                s.delete(row)

    @staticmethod
    def _row(s: Session, client_id: str, key: str) -> IdempotencyRow | None:
        return s.scalars(
            select(IdempotencyRow).where(
                IdempotencyRow.client_id == client_id, IdempotencyRow.key == key
            )
        ).first()
