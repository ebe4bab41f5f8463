"""ReaderPool pages without a broker: a pooled reader standing at the page's start keeps
what it has fetched when that fills the page, and otherwise reads the page afresh from its
start — never a record lost or repeated. (The in-memory Kafka port of tests/unit/dataplane;
the real clients: tests/integration/test_reader_pool.py.)"""

from __future__ import annotations

from dataplane.readers import ReaderPool
from exchange.kafka.port import OutRecord
from tests.unit.dataplane.world import FakeKafka, FakeReader


class CountingReader(FakeReader):
    seeks = 0

    def seek(self, offsets: dict[int, int]) -> None:
        CountingReader.seeks += 1
        super().seek(offsets)


class Kafka(FakeKafka):
    def reader(self, topic: str) -> FakeReader:
        return CountingReader(self, topic)

    def end_offsets(self, topic: str) -> dict[int, int]:
        return FakeReader(self, topic).end_offsets()


def test_the_next_page_of_a_cursor_is_served_from_what_the_reader_holds() -> None:
    kafka = Kafka()
    kafka.publish_atomically("t", [OutRecord(None, f"v{i}".encode()) for i in range(10)])
    pool = ReaderPool(kafka)  # type: ignore[arg-type]
    CountingReader.seeks = 0
    pages: list[list[bytes]] = []
    cursor: dict[int, int] = {}
    for _ in range(4):
        page = pool.read("t", cursor, max_records=4, wait_ms=0)
        pages.append([r.value for r in page.records])
        cursor = page.next_offsets
    assert pages == [
        [b"v0", b"v1", b"v2", b"v3"],
        [b"v4", b"v5", b"v6", b"v7"],  # no seek: the reader stood at the cursor
        [b"v8", b"v9"],  # two held, page of four: read afresh from the cursor
        [],
    ]
    assert cursor == {0: 10}
    assert CountingReader.seeks == 3  # the first page, the short one, the empty one


def test_a_reader_elsewhere_is_sought_to_the_page_s_start() -> None:
    kafka = Kafka()
    kafka.publish_atomically("t", [OutRecord(None, f"v{i}".encode()) for i in range(6)])
    pool = ReaderPool(kafka)  # type: ignore[arg-type]
    pool.read("t", {}, max_records=4, wait_ms=0)  # the pooled reader now stands at 4
    page = pool.read("t", {0: 1}, max_records=2, wait_ms=0)  # another cursor
    assert [r.value for r in page.records] == [b"v1", b"v2"] and page.next_offsets == {0: 3}
