"""Cursor commits (SubscriptionStore.commit) on a real SQLite file: forward only; with the
caller's department, one transaction that finds only that department's active subscription
before it even reads the cursor; and no fsync of its own (synchronous=NORMAL: a machine
crash may cost a redelivery, never a skipped record — README "Cursor durability")."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from dataplane.store import SubscriptionStore
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import InvalidInput, NotFound


@pytest.fixture
def store(tmp_path: Path) -> SubscriptionStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(engine)
    return SubscriptionStore(session_factory(engine))


def _sub(store: SubscriptionStore, consumer: str = "civil") -> str:
    return store.create(
        topic="health.t", consumer=consumer, client_id="c", fields=None, start="earliest", cursor={}
    ).id


def test_a_commit_moves_the_cursor_forward_only(store: SubscriptionStore) -> None:
    sid = _sub(store)
    store.commit(sid, {0: 5, 1: 2}, consumer="civil")
    store.commit(sid, lambda: {0: 3, 1: 4}, consumer="civil")
    assert store.get(sid).cursor == {0: 5, 1: 4}


def test_another_department_s_or_a_closed_subscription_is_not_found_before_the_cursor(
    store: SubscriptionStore,
) -> None:
    sid = _sub(store)

    def bad_cursor() -> dict[int, int]:
        raise InvalidInput("cursor is not valid for this subscription")

    with pytest.raises(NotFound):
        store.commit(sid, bad_cursor, consumer="health")
    with pytest.raises(InvalidInput):  # the owner's bad cursor: checked, refused
        store.commit(sid, bad_cursor, consumer="civil")
    store.close(sid)
    with pytest.raises(NotFound):
        store.commit(sid, {0: 9}, consumer="civil")
    with pytest.raises(NotFound):
        store.commit("sub_missing", {0: 1}, consumer="civil")
    assert store.get(sid).cursor == {}


def test_cursor_commits_do_not_wait_for_the_disk(store: SubscriptionStore) -> None:
    """synchronous=NORMAL (1) on the commit's connections, FULL (2) on everyone else's."""
    sid = _sub(store)
    store.commit(sid, {0: 1})
    with store._cursor_sessions() as s:
        assert s.execute(text("PRAGMA synchronous")).scalar() == 1
    with store.sessions() as s:
        assert s.execute(text("PRAGMA synchronous")).scalar() == 2


def test_get_reads_a_subscription_as_the_orm_does(store: SubscriptionStore) -> None:
    """get (one Core query, on every pull) answers as the ORM-mapped listing does."""
    with_all = store.create(
        topic="health.t",
        consumer="civil",
        client_id="c",
        fields=["name", "citizen_id"],
        start="latest",
        cursor={0: 3, 2: 9},
        webhook_url="https://example.org/hook",
        webhook_secret=b"\x01sealed",
    ).id
    plain = _sub(store)
    store.commit(plain, {1: 4})
    listed = {s.id: s for s in store.for_consumer("civil")}
    assert store.get(with_all) == listed[with_all] and store.get(plain) == listed[plain]
    assert store.get(with_all, "civil").fields == frozenset({"name", "citizen_id"})
    with pytest.raises(NotFound):
        store.get(with_all, "health")
    with pytest.raises(NotFound):
        store.get("sub_missing")
