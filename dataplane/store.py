"""Subscriptions and their committed cursors in the control plane."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, Table, bindparam, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from dataplane.cursor import Offsets
from dataplane.models import DeadLetterRow, SubscriptionRow
from exchange.db import read_first, relaxed_commit, relaxed_sessions, transaction
from exchange.errors import NotFound


@dataclass(frozen=True)
class Subscription:
    id: str
    topic: str
    consumer: str
    client_id: str
    fields: frozenset[str] | None
    start: str
    cursor: Offsets
    status: str
    webhook_url: str | None
    webhook_secret: bytes | None


def _sub(r: SubscriptionRow | Row[Any]) -> Subscription:
    """From an ORM row or a Core row of the table's columns (:data:`_BY_ID`)."""
    return Subscription(
        r.id,
        r.topic,
        r.consumer,
        r.client_id,
        frozenset(r.fields) if r.fields is not None else None,
        r.start,
        {int(p): int(o) for p, o in r.cursor.items()},
        r.status,
        r.webhook_url,
        r.webhook_secret,
    )


_T: Table = SubscriptionRow.__table__  # type: ignore[assignment]
# One subscription by id, without an ORM session (on every pull and page: ~1 ms → ~0.1 ms).
_BY_ID = select(
    _T.c.id,
    _T.c.topic,
    _T.c.consumer,
    _T.c.client_id,
    _T.c.fields,
    _T.c.start,
    _T.c.cursor,
    _T.c.status,
    _T.c.webhook_url,
    _T.c.webhook_secret,
).where(_T.c.id == bindparam("sid"))


class SubscriptionStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        # Cursor commits do not wait for the disk (see commit): sessions of their own.
        self._cursor_sessions, self._relaxed = relaxed_sessions(sessions)

    def create(
        self,
        *,
        topic: str,
        consumer: str,
        client_id: str,
        fields: list[str] | None,
        start: str,
        cursor: Offsets,
        webhook_url: str | None = None,
        webhook_secret: bytes | None = None,
    ) -> Subscription:
        row = SubscriptionRow(
            id=f"sub_{secrets.token_hex(12)}",
            topic=topic,
            consumer=consumer,
            client_id=client_id,
            fields=fields,
            start=start,
            cursor={str(p): o for p, o in cursor.items()},
            status="active",
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            created_at=datetime.now(UTC),
        )
        with transaction(self.sessions) as s:
            s.add(row)
        return _sub(row)

    def get(self, sub_id: str, consumer: str | None = None) -> Subscription:
        """The subscription; NotFound also when it belongs to another department."""
        row = read_first(self.sessions, _BY_ID, {"sid": sub_id})
        if row is None or (consumer is not None and row.consumer != consumer):
            raise NotFound(f"subscription {sub_id} not found")
        return _sub(row)

    def for_consumer(self, consumer: str) -> list[Subscription]:
        with transaction(self.sessions) as s:
            rows = s.scalars(
                select(SubscriptionRow)
                .where(SubscriptionRow.consumer == consumer)
                .order_by(SubscriptionRow.created_at)
            )
            return [_sub(r) for r in rows]

    def on_topics(self, topics: Iterable[str]) -> list[Subscription]:
        """Open subscriptions to these topics (an owner's view of who reads its data)."""
        names = sorted(set(topics))
        if not names:
            return []
        with transaction(self.sessions) as s:
            rows = s.scalars(
                select(SubscriptionRow)
                .where(SubscriptionRow.topic.in_(names), SubscriptionRow.status != "closed")
                .order_by(SubscriptionRow.consumer, SubscriptionRow.created_at)
            )
            return [_sub(r) for r in rows]

    def commit(
        self,
        sub_id: str,
        offsets: Offsets | Callable[[], Offsets],
        *,
        consumer: str | None = None,
    ) -> None:
        """Move the committed cursor forward (never backwards: a stale commit is a no-op).

        With ``consumer``, only an active subscription of that department (NotFound
        otherwise, as :meth:`get`); ``offsets`` may then be a function (a cursor to check)
        called only once that holds, so a foreign subscription is not found whatever the
        cursor. One transaction: a commit is on every page's path.

        **Durability.** A cursor commit does not wait for the disk (SQLite
        ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit = off``): a process crash
        loses nothing, a machine crash (power loss) may lose the last commits, and the
        subscription then starts again from an earlier cursor — those records are delivered
        again (at least once, as after any crash between a page and its commit; each
        carries its ``record_id`` to deduplicate). Never a record skipped."""
        with transaction(self._cursor_sessions) as s:
            if self._relaxed:
                relaxed_commit(s)
            row = s.get(SubscriptionRow, sub_id, with_for_update=True)
            if row is None or (
                consumer is not None and (row.consumer != consumer or row.status != "active")
            ):
                raise NotFound(f"subscription {sub_id} not found")
            if callable(offsets):
                offsets = offsets()
            merged = {int(p): int(o) for p, o in row.cursor.items()}
            for p, o in offsets.items():
                merged[p] = max(o, merged.get(p, 0))
            row.cursor = {str(p): o for p, o in sorted(merged.items())}

    def reset_cursor(self, sub_id: str, offsets: Offsets) -> Subscription:
        """Replay: set the committed cursor anywhere (backwards too), unlike commit()."""
        with transaction(self.sessions) as s:
            row = s.get(SubscriptionRow, sub_id)
            if row is None:
                raise NotFound(f"subscription {sub_id} not found")
            row.cursor = {str(p): o for p, o in sorted(offsets.items())}
            return _sub(row)

    def close(self, sub_id: str) -> None:
        with transaction(self.sessions) as s:
            row = s.get(SubscriptionRow, sub_id)
            if row is None:
                raise NotFound(f"subscription {sub_id} not found")
            row.status = "closed"

    # -- webhook leases: one gateway instance dispatches a webhook subscription at a time --
    def webhook_subscriptions(self) -> list[Subscription]:
        with transaction(self.sessions) as s:
            rows = s.scalars(
                select(SubscriptionRow).where(
                    SubscriptionRow.webhook_url.is_not(None), SubscriptionRow.status == "active"
                )
            )
            return [_sub(r) for r in rows]

    def acquire_lease(self, sub_id: str, owner: str, seconds: float) -> bool:
        now = datetime.now(UTC)
        with transaction(self.sessions) as s:
            result = s.execute(
                update(SubscriptionRow)
                .where(
                    SubscriptionRow.id == sub_id,
                    or_(
                        SubscriptionRow.lease_owner.is_(None),
                        SubscriptionRow.lease_owner == owner,
                        SubscriptionRow.lease_until < now,
                    ),
                )
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def dead_letter(
        self,
        sub_id: str,
        cursor_from: Offsets,
        cursor_to: Offsets,
        record_ids: list[str],
        attempts: int,
        error: str,
    ) -> None:
        with transaction(self.sessions) as s:
            s.add(
                DeadLetterRow(
                    subscription_id=sub_id,
                    cursor_from={str(k): v for k, v in cursor_from.items()},
                    cursor_to={str(k): v for k, v in cursor_to.items()},
                    record_ids=record_ids,
                    attempts=attempts,
                    last_error=error[:500],
                    created_at=datetime.now(UTC),
                )
            )

    def overview(self, limit: int = 200, topic: str | None = None) -> list[dict[str, Any]]:
        """Active subscriptions (of ``topic`` only, if given) with their committed cursor and
        dead-letter count (health)."""
        dead = (
            select(DeadLetterRow.subscription_id, func.count().label("n"))
            .group_by(DeadLetterRow.subscription_id)
            .subquery()
        )
        q = (
            select(SubscriptionRow, dead.c.n)
            .outerjoin(dead, dead.c.subscription_id == SubscriptionRow.id)
            .where(SubscriptionRow.status == "active")
            .order_by(SubscriptionRow.topic, SubscriptionRow.id)
            .limit(limit)
        )
        if topic is not None:
            q = q.where(SubscriptionRow.topic == topic)
        with transaction(self.sessions) as s:
            return [
                {
                    "id": row.id,
                    "topic": row.topic,
                    "consumer": row.consumer,
                    "cursor": dict(row.cursor),
                    "webhook": row.webhook_url is not None,
                    "dead_letters": int(n or 0),
                }
                for row, n in s.execute(q)
            ]

    def dead_letters(self, sub_id: str) -> list[dict[str, object]]:
        with transaction(self.sessions) as s:
            rows = s.scalars(
                select(DeadLetterRow)
                .where(DeadLetterRow.subscription_id == sub_id)
                .order_by(DeadLetterRow.id)
            )
            return [
                {
                    "id": r.id,
                    "record_ids": r.record_ids,
                    "attempts": r.attempts,
                    "last_error": r.last_error,
                    "created_at": r.created_at.isoformat(),
                }
                for r in rows
            ]
