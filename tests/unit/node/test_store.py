"""The node's outbox on a real SQLite file: batches, quota, idempotency, at-rest encryption."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path

import pytest

from exchange.errors import Conflict
from node.atrest import FileKey
from node.config import LocalTokens, NodeHome, _digest
from node.errors import NodeConfigError, OutboxFull
from node.forward import Backoff, Pacer, body_of, idempotency_key
from node.store import Store


def store(tmp_path: Path, **kw: object) -> Store:
    return Store(tmp_path / "outbox.db", max_bytes=int(kw.pop("max_bytes", 1 << 24)), **kw)  # type: ignore[arg-type]


def put(
    st: Store, topic: str, n: int, *, kind: str = "json", key: str | None = None, size: int = 10
) -> dict[str, object]:
    payloads = [
        json.dumps({"key": str(i), "value": {"pad": "x" * size}}).encode() for i in range(n)
    ]
    answer, _ = st.append(
        "app",
        topic,
        kind,
        '"latest"',
        payloads,
        idempotency_key=key,
        request_hash=f"h{n}{topic}",
        node_id="node1",
    )
    return answer


def test_batches_are_contiguous_runs_of_one_topic_and_stable_until_settled(
    tmp_path: Path,
) -> None:
    st = store(tmp_path)
    put(st, "a.x", 3)
    put(st, "b.y", 2)
    put(st, "a.x", 4)
    first = st.next_batch(100, 1 << 20)
    assert first is not None and (first.topic, first.records) == ("a.x", 3)
    assert st.next_batch(100, 1 << 20) == first  # the head stays until settled
    reopened = store(tmp_path)  # a restart finds the same batch, same id
    assert reopened.next_batch(100, 1 << 20) == first
    st.delivered(first, replayed=False)
    second = st.next_batch(100, 1 << 20)
    assert second is not None and (second.topic, second.records) == ("b.y", 2)
    assert second.id != first.id
    st.delivered(second, replayed=True)
    third = st.next_batch(2, 1 << 20)  # the record cap splits a run
    assert third is not None and third.records == 2
    assert st.meta()["replayed_batches"] == 1


def test_the_byte_cap_splits_but_never_below_one_record(tmp_path: Path) -> None:
    st = store(tmp_path)
    put(st, "a.x", 5, size=1000)
    batch = st.next_batch(100, 10)
    assert batch is not None and batch.records == 1


def test_body_is_the_same_bytes_every_time_and_keys_are_per_node_and_batch(
    tmp_path: Path,
) -> None:
    st = store(tmp_path)
    put(st, "a.x", 3)
    batch = st.next_batch(100, 1 << 20)
    assert batch is not None
    body, ctype = body_of(batch, st.payloads(batch))
    assert body == body_of(batch, store(tmp_path).payloads(batch))[0]
    parsed = json.loads(body)
    assert ctype == "application/json" and len(parsed["records"]) == 3
    assert parsed["schema_version"] == "latest"
    assert idempotency_key("n1", batch) != idempotency_key("n2", batch)


def test_quota_refuses_a_whole_request_and_keeps_what_was_stored(tmp_path: Path) -> None:
    st = store(tmp_path, max_bytes=64 * 1024)
    stored = 0
    with pytest.raises(OutboxFull):
        for _ in range(1000):
            put(st, "a.x", 10, size=500)
            stored += 10
    assert stored > 0
    assert st.backlog().records == stored  # the refused request: nothing of it
    # the node's own writes have headroom beyond the quota: a full outbox still drains
    batch = st.next_batch(1000, 1 << 24)
    assert batch is not None
    st.delivered(batch, replayed=False)
    put(st, "a.x", 10, size=500)


def test_local_idempotency_key_replays_and_refuses_another_body(tmp_path: Path) -> None:
    st = store(tmp_path)
    first = put(st, "a.x", 2, key="k1")
    again, replayed = st.append(
        "app",
        "a.x",
        "json",
        '"latest"',
        [b"{}"] * 2,
        idempotency_key="k1",
        request_hash="h2a.x",
        node_id="node1",
    )
    assert replayed and again == first
    with pytest.raises(Conflict):
        st.append(
            "app",
            "a.x",
            "json",
            '"latest"',
            [b"{}"],
            idempotency_key="k1",
            request_hash="other",
            node_id="node1",
        )
    assert st.backlog().records == 2


def test_rejected_records_go_to_dead_letters_and_the_rest_is_resealed(tmp_path: Path) -> None:
    st = store(tmp_path)
    put(st, "a.x", 5)
    batch = st.next_batch(100, 1 << 20)
    assert batch is not None
    st.rejected_records(batch, {1, 3}, 422, "invalid_records")
    again = st.next_batch(100, 1 << 20)
    assert again is not None and again.id != batch.id and again.records == 3
    assert [json.loads(p)["key"] for p in st.payloads(again)] == ["0", "2", "4"]
    assert [d["sequence"] for d in st.dead_letters()] == [batch.first_seq + 1, batch.first_seq + 3]


def test_inbox_page_commit_and_cursor(tmp_path: Path) -> None:
    st = store(tmp_path)
    st.prefetched("s1", [{"n": i} for i in range(5)], "up1")
    assert st.upstream_cursor("s1") == "up1"
    page = st.page("s1", 0, 3)
    assert [r["n"] for _, r in page] == [0, 1, 2]
    st.commit("s1", page[-1][0])
    assert st.inbox_backlog("s1") == 2
    assert [r["n"] for _, r in st.page("s1", st.committed("s1"), 10)] == [3, 4]


def test_records_at_rest_are_sealed_with_the_file_key(tmp_path: Path) -> None:
    st = store(tmp_path, at_rest=FileKey(os.urandom(32)))
    put(st, "a.x", 1, size=30)
    st.prefetched("s1", [{"secret": "citizen-330100"}], "c")
    raw = sqlite3.connect(tmp_path / "outbox.db")
    blobs = [r[0] for r in raw.execute("SELECT payload FROM outbox")]
    blobs += [r[0] for r in raw.execute("SELECT record FROM inbox")]
    raw.close()
    assert all(b"x" * 30 not in b and b"citizen" not in b for b in blobs)
    batch = st.next_batch(10, 1 << 20)
    assert batch is not None
    assert b"x" * 30 in st.payloads(batch)[0]
    assert st.page("s1", 0, 1)[0][1] == {"secret": "citizen-330100"}


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.5, 8.0, random.Random(1))
    waits = [b.next() for _ in range(8)]
    assert 0.25 <= waits[0] <= 0.5
    assert all(4.0 <= w <= 8.0 for w in waits[5:])
    b.reset()
    assert b.next() <= 0.5


def test_pacer_spaces_sends_by_size_over_rate() -> None:
    now = [100.0]
    p = Pacer(1000, clock=lambda: now[0])
    assert p.wait_for(500) == 0.0
    assert p.wait_for(500) == pytest.approx(0.5)
    assert Pacer(None).wait_for(10**9) == 0.0


def test_tokens_are_stored_hashed_and_loose_files_refused(tmp_path: Path) -> None:
    home = NodeHome(tmp_path / "n")
    from node.config import Credentials, NodeConfig

    home.init(NodeConfig(gateway_url="http://x"), Credentials(client_id="c", client_secret="s"))
    token = home.add_token("app1")
    assert token not in (tmp_path / "n" / "tokens.json").read_text()
    assert home.tokens().app_for(token) == "app1"
    assert home.tokens().app_for(token + "x") is None
    assert LocalTokens({"a": _digest("t")}).app_for("t") == "a"
    os.chmod(tmp_path / "n" / "credentials.json", 0o644)
    with pytest.raises(NodeConfigError):
        home.credentials()
