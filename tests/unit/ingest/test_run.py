"""The import's batching, keys, checkpoint and reject file, on a fake gateway port (the real
gateway runs in tests/e2e/test_import*.py; here a failure can be injected at any batch)."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from ingest import infer
from ingest.api import Published
from ingest.errors import ImportFailed
from ingest.prepare import sample
from ingest.run import Importer
from ingest.sources import Source, open_source


class FakeGateway:
    """Records every (key, body) sent; a key seen before is answered as a replay."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.taken: dict[str, bytes] = {}
        self.fail_at = fail_at

    def publish(self, topic: str, body: bytes, key: str) -> Published:
        self.sent.append((key, body))
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise ImportFailed("link cut")
        if key in self.taken:
            assert self.taken[key] == body  # the gateway would answer 409 otherwise
            return Published(body.count(b"\0\0\0\0\x07"), True, [])
        self.taken[key] = body
        return Published(body.count(b"\0\0\0\0\x07"), False, [])


def csv_file(path: Path, rows: int, bad_every: int = 0) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "amount"])
        for i in range(1, rows + 1):
            w.writerow([i, "oops" if bad_every and i % bad_every == 0 else i * 10])
    return path


def importer(src: Source, fake: FakeGateway, tmp: Path, **kw: object) -> Importer:
    m = infer.propose("a.b", src.columns, [["1", "10"]], None)
    return Importer(
        fake,  # type: ignore[arg-type]
        src,
        m,
        7,
        checkpoint=tmp / "cp.json",
        reject_file=tmp / "rejects.csv",
        **kw,  # type: ignore[arg-type]
    )


def test_crash_then_rerun_resends_with_the_same_keys(tmp_path: Path) -> None:
    path = csv_file(tmp_path / "x.csv", 100, bad_every=7)
    clean = FakeGateway()
    (tmp_path / "clean").mkdir()
    importer(open_source(str(path)), clean, tmp_path / "clean", batch_size=10, workers=3).run()
    expected = {k for k, _ in clean.sent}
    assert len(expected) == 9  # 86 good rows in batches of 10

    crashing = FakeGateway(fail_at=5)
    with pytest.raises(ImportFailed):
        importer(open_source(str(path)), crashing, tmp_path, batch_size=10, workers=3).run()
    rerun = FakeGateway()
    rerun.taken = dict(crashing.taken)  # what the gateway already holds
    s = importer(open_source(str(path)), rerun, tmp_path, batch_size=10, workers=3).run()
    keys = {k for k, _ in crashing.sent} | {k for k, _ in rerun.sent}
    assert keys == expected  # the same batches under the same keys: nothing new, nothing lost
    assert len(rerun.taken) == len(expected)
    assert s.resumed_after > 0 and s.resumed_after + s.read == 100
    rows = list(csv.reader((tmp_path / "rejects.csv").open()))
    assert [int(r[0]) for r in rows[1:]] == [i + 1 for i in range(7, 101, 7)]  # each once


def test_sql_rows_with_one_watermark_stay_in_one_batch(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER, amount INTEGER, day TEXT)")
    days = ["d1"] * 3 + ["d2"] * 6 + ["d3"] * 2
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, i, d) for i, d in enumerate(days)])
    con.commit()
    con.close()
    src = open_source(f"sqlite:///{db}", table="t", order_column="day")
    m = infer.propose("a.b", src.columns, sample(src), None)
    fake = FakeGateway()
    Importer(
        fake,  # type: ignore[arg-type]
        src,
        m,
        7,
        checkpoint=tmp_path / "cp.json",
        reject_file=tmp_path / "r.csv",
        batch_size=4,
    ).run()
    sizes = [body.count(b"\0\0\0\0\x07") for _, body in fake.sent]
    assert sizes == [9, 2]  # d1+d2 (the batch grew past 4 to keep d2 whole), then d3
