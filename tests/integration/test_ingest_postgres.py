"""The SQL source on a real PostgreSQL (throwaway cluster): typed columns inferred, an
``updated_at`` watermark syncs only what changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from ingest import infer
from ingest.checkpoint import decode_watermark, encode_watermark
from ingest.convert import Encoder
from ingest.sources import SqlSource
from tests.integration.test_registry_postgres import pg_url  # noqa: F401 - the cluster fixture

pytestmark = pytest.mark.slow
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_watermark_sync_on_postgres(pg_url: str) -> None:  # noqa: F811
    engine = create_engine(pg_url)
    with engine.begin() as c:
        c.execute(text("DROP TABLE IF EXISTS legacy_people"))
        c.execute(
            text(
                "CREATE TABLE legacy_people (id int PRIMARY KEY, name text, "
                "allowance numeric(10,2), born date, updated_at timestamptz NOT NULL)"
            )
        )
        for i in range(1, 11):
            c.execute(
                text("INSERT INTO legacy_people VALUES (:i, :n, :a, :b, :u)"),
                {"i": i, "n": f"测试{i}", "a": Decimal(f"{i}.25"), "b": datetime(1990, 1, i).date(),
                 "u": T0 + timedelta(hours=i // 2)},
            )  # fmt: skip
    src = SqlSource(pg_url, table="legacy_people", order_column="updated_at")
    rows = [r.values for r in src.rows() if r.values]
    assert [r[0] for r in rows] == list(range(1, 11))  # by updated_at, then stable
    m = infer.propose("civil.people", src.columns, rows, "id")
    types = {f.name: f.type for f in m.fields}
    assert types == {
        "id": "long",
        "name": "string",
        "allowance": "decimal",
        "born": "date",
        "updated_at": "timestamp-millis",
    }
    Encoder(m, src.columns, 1).encode(rows[0])  # typed values encode as they are

    # A checkpoint's watermark survives JSON and selects only later rows.
    mark = decode_watermark(encode_watermark(rows[4][4]))  # id 5 at T0 + 2h
    later = [r.values[0] for r in src.rows(watermark=mark) if r.values]
    assert later == [6, 7, 8, 9, 10]
    with engine.begin() as c:
        c.execute(text("UPDATE legacy_people SET updated_at = now() WHERE id = 2"))
    assert [r.values[0] for r in src.rows(watermark=mark) if r.values][-1] == 2
    engine.dispose()
