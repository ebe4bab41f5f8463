"""SSE events of a stream: a live batch (rendered once for its group) and a catch-up page
come out as one chunk, byte for byte the events written one by one with the general cursor
encoder, skipping what the stream has already seen."""

from __future__ import annotations

import json

from dataplane import cursor as cursors
from dataplane.fanout import LiveBatch
from dataplane.loop import Step
from dataplane.render import Rendered
from exchange.kafka.port import InRecord
from gateway.routes.subscriptions import _live_events, _page_events, _sse

KEY = cursors.cursor_key(b"m" * 32)


def _rec(partition: int, offset: int) -> InRecord:
    return InRecord("t", partition, offset, 0, b"k", b"", ())


def _item(r: InRecord) -> dict[str, object]:
    return {"partition": r.partition, "offset": r.offset, "value": {"n": r.offset}}


def _one_by_one(
    records: list[InRecord], items: dict[tuple[int, int], str], pos: dict[int, int]
) -> bytes:
    """The events as the stream wrote them before: one at a time, cursors.encode each."""
    out = b""
    for r in records:
        if r.offset < pos.get(r.partition, 0):
            continue
        pos[r.partition] = r.offset + 1
        item = items.get((r.partition, r.offset))
        if item is not None:
            cursor = cursors.encode(KEY, "sub-1", pos)
            out += f"id: {cursor}\nevent: record\ndata: {item}\n\n".encode()
    return out


def test_live_batches_are_one_chunk_of_the_same_events() -> None:
    first = [_rec(0, 4), _rec(0, 5), _rec(1, 9)]
    second = [_rec(0, 6), _rec(1, 10)]
    withheld = (0, 5)  # rendered nothing for it: no event, but the cursor moves past it
    items = {
        (r.partition, r.offset): json.dumps(_item(r), separators=(",", ":"))
        for r in first + second
        if (r.partition, r.offset) != withheld
    }
    batches = [LiveBatch(first, items), LiveBatch(second, items)]
    start = {0: 5, 1: 0}  # the stream has seen offset 4 of partition 0 already
    pos = dict(start)
    chunk = _live_events(batches, pos, cursors.Signer(KEY, "sub-1"))
    expected_pos = dict(start)
    assert chunk == _one_by_one(first + second, items, expected_pos)
    assert pos == expected_pos == {0: 7, 1: 11}
    assert chunk.count(b"event: record") == 3


def test_a_catch_up_page_is_one_chunk_of_the_same_events() -> None:
    records = [_rec(0, 0), _rec(0, 1), _rec(0, 2)]
    rendered = Rendered(records=[_item(records[0]), _item(records[2])])
    step = Step(records, rendered, {0: 3})
    pos: dict[int, int] = {}
    chunk = _page_events(step, pos, cursors.Signer(KEY, "sub-1"))
    assert chunk == (
        _sse("record", _item(records[0]), cursors.encode(KEY, "sub-1", {0: 1}))
        + _sse("record", _item(records[2]), cursors.encode(KEY, "sub-1", {0: 3}))
    )
    assert pos == {0: 3}
