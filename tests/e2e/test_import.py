"""``ingest`` against the real gateway and broker: what an import publishes is what a granted
subscriber receives, bad rows are rejected without stopping the good ones, an evolving
spreadsheet gets a compatible version or a clear refusal, SQL syncs incrementally."""

from __future__ import annotations

import csv
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from examples.generate_residents import resident_id
from examples.generate_residents import write as write_residents
from exchange.client import ExchangeClient
from ingest.api import GatewayApi
from ingest.errors import ImportFailed, SourceError
from ingest.prepare import plan, ready
from ingest.run import Importer, Summary
from ingest.sources import open_source
from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@dataclass
class Depts:
    owner: str
    consumer: str
    importer: ExchangeClient  # the owner's own client: publisher, steward, registry:write
    subscriber: ExchangeClient

    def grant(self, topic: str, fields: list[str]) -> None:
        ag = self.subscriber.call(
            "POST",
            "/v1/agreements",
            json={
                "topic": topic,
                "fields": fields,
                "purpose": "import test",
                "legal_basis": "test",
                "valid_from": "2020-01-01T00:00:00Z",
                "valid_until": "2099-01-01T00:00:00Z",
            },
        )
        self.importer.call("POST", f"/v1/agreements/{ag['id']}/approve", json={})

    def receive(self, topic: str, want: int, timeout: float = 30) -> list[dict[str, Any]]:
        sub = self.subscriber.subscribe(topic)
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            page = self.subscriber.poll(sub, max=500, wait_ms=500)
            got += page["records"]
            if page["records"]:
                self.subscriber.commit(sub, page["cursor"])
            elif len(got) >= want:
                break  # an empty page after the expected count: nothing more is coming
        return got


def departments(admin: ExchangeClient, url: str) -> Depts:
    tag = uuid.uuid4().hex[:6]
    owner, consumer = f"county-{tag}", f"health-{tag}"
    for d in (owner, consumer):
        admin.call("POST", "/v1/departments", json={"id": d, "name": d, "level": "county"})

    def client(dept: str, roles: list[str]) -> ExchangeClient:
        body = admin.call(
            "POST", f"/v1/departments/{dept}/clients", json={"name": "app", "roles": roles}
        )
        return ExchangeClient(url, body["client_id"], body["client_secret"])

    return Depts(
        owner,
        consumer,
        client(owner, ["publisher", "steward", "registry:write", "registry:read"]),
        client(consumer, ["subscriber", "registry:read"]),
    )


@pytest.fixture
def depts(gateway: ThreadGateway, admin: ExchangeClient) -> Depts:
    return departments(admin, gateway.url)


def run_import(client: ExchangeClient, source: str, topic: str, tmp: Path, **kw: Any) -> Summary:
    api = GatewayApi(client)
    src = open_source(
        source, **{k: kw.pop(k) for k in ("sheet", "table", "order_column") if k in kw}
    )
    p = plan(api, src, topic)
    schema_id = ready(api, p, p.mapping)
    base = "sql" if "://" in source else Path(source).name
    return Importer(
        api,
        src,
        p.mapping,
        schema_id,
        checkpoint=tmp / f"{base}.checkpoint.json",
        reject_file=tmp / f"{base}.rejects.csv",
        **kw,
    ).run()


def test_gbk_csv_published_and_granted_fields_only(depts: Depts, tmp_path: Path) -> None:
    src = tmp_path / "residents.csv"
    write_residents(src, 120)
    topic = f"{depts.owner}.residents"
    s = run_import(depts.importer, str(src), topic, tmp_path, batch_size=25)
    assert (s.read, s.published, s.rejected) == (120, 120, 0)
    assert not (tmp_path / "residents.csv.rejects.csv").exists()

    fields = {
        f["path"]: f
        for f in depts.importer.call(
            "GET", f"/registry/subjects/{topic}-value/versions/latest/fields"
        )
    }
    assert fields["id_number"]["classification"] == "secret"
    assert fields["id_number"]["data_subject"] is True
    assert fields["name"]["classification"] == "sensitive"
    assert fields["birth_date"]["classification"] == "internal"

    depts.grant(topic, ["seq", "name", "birth_date"])
    got = depts.receive(topic, 120)
    assert len(got) == 120
    values = sorted((r["value"] for r in got), key=lambda v: v["seq"])
    assert set(values[0]) == {"seq", "name", "birth_date"}  # id, mobile, address withheld
    assert values[0]["name"] == "测试甲"
    assert [v["seq"] for v in values] == list(range(1, 121))

    # The same file again: the checkpoint says it is done; nothing is published twice.
    again = run_import(depts.importer, str(src), topic, tmp_path)
    assert again.already_done and again.published == 0


def test_bad_rows_rejected_good_ones_published(
    depts: Depts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.infer.SAMPLE_ROWS", 40)  # the bad rows come after the sample
    src = tmp_path / "mixed.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "amount", "day"])
        for i in range(1, 41):
            w.writerow([i, f"{i}.50", f"2026-01-{1 + i % 28:02d}"])
        w.writerow([41, "lots", "2026-01-01"])  # not a number
        w.writerow([42, "1.5"])  # ragged
        w.writerow([43, "2.25", "2026-02-30"])  # no such day
        w.writerow([44, "3.75", "2026-03-01"])
    topic = f"{depts.owner}.payments"
    s = run_import(depts.importer, str(src), topic, tmp_path, batch_size=10)
    assert (s.read, s.published, s.rejected) == (44, 41, 3)
    rejects = list(csv.reader((tmp_path / "mixed.csv.rejects.csv").open()))
    assert rejects[0] == ["row", "reason"]
    by_row = {int(r[0]): r[1] for r in rejects[1:]}
    assert set(by_row) == {42, 43, 44}  # file lines (the header is line 1)
    assert "amount" in by_row[42] and "lots" not in by_row[42]  # reasons never hold values
    assert "3 values" not in by_row[43] and "2 values" in by_row[43]
    assert "day" in by_row[44]


def test_evolving_spreadsheet_compatible_version_or_refusal(depts: Depts, tmp_path: Path) -> None:
    topic = f"{depts.owner}.stock"
    v1 = tmp_path / "v1.csv"
    v1.write_text("item,count\nrice,10\nsalt,3\n")
    run_import(depts.importer, str(v1), topic, tmp_path)
    v2 = tmp_path / "v2.csv"  # a new column: a compatible new version (optional field)
    v2.write_text("item,count,unit\noil,4,l\n")
    s = run_import(depts.importer, str(v2), topic, tmp_path)
    assert s.published == 1
    versions = depts.importer.call("GET", f"/registry/subjects/{topic}-value/versions")
    assert versions == [1, 2]
    v3 = tmp_path / "v3.csv"  # a required column gone: refused, nothing published
    v3.write_text("item,unit\nflour,kg\n")
    with pytest.raises(SourceError, match="count"):
        run_import(depts.importer, str(v3), topic, tmp_path)
    v4 = tmp_path / "v4.csv"  # values that no longer fit a known field: rows rejected
    v4.write_text("item,count\nsugar,a few\ntea,2\n")
    s = run_import(depts.importer, str(v4), topic, tmp_path)
    assert (s.published, s.rejected) == (1, 1)
    # A mapping edited to change the field's type: the subject's rules refuse the version.
    api = GatewayApi(depts.importer)
    p = plan(api, open_source(str(v4)), topic)
    with pytest.raises(ImportFailed, match="compatible"):
        ready(api, p, p.mapping.with_field("count", type="string"))
    assert depts.importer.call("GET", f"/registry/subjects/{topic}-value/versions") == [1, 2]


def test_sql_incremental_sync_on_sqlite(depts: Depts, tmp_path: Path) -> None:
    db = tmp_path / "legacy.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, citizen TEXT)")
    con.executemany(
        "INSERT INTO people VALUES (?, ?, ?)",
        [(i, f"测试{i}", resident_id(i)) for i in range(1, 31)],
    )
    con.commit()
    topic = f"{depts.owner}.people"
    url = f"sqlite:///{db}"
    kw: dict[str, Any] = {"table": "people", "order_column": "id", "batch_size": 8}
    first = run_import(depts.importer, url, topic, tmp_path, **dict(kw))
    assert first.published == 30
    con.executemany(
        "INSERT INTO people VALUES (?, ?, ?)",
        [(i, f"测试{i}", resident_id(i)) for i in range(31, 36)],
    )
    con.commit()
    con.close()
    second = run_import(depts.importer, url, topic, tmp_path, **dict(kw))
    assert (second.read, second.published) == (5, 5)
    third = run_import(depts.importer, url, topic, tmp_path, **dict(kw))
    assert third.published == 0
    depts.grant(topic, ["id"])
    ids = sorted(r["value"]["id"] for r in depts.receive(topic, 35))
    assert ids == list(range(1, 36))
