"""Sources read real files and a real SQLite database: encodings, sheets, bad input."""

from __future__ import annotations

import codecs
import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from ingest.errors import SourceError
from ingest.sources import CsvSource, SqlSource, detect_encoding, open_source

ROWS = [["序号", "姓名", "住址"], ["1", "测试甲", "示例路1号"], ["2", "测试乙", "示例路2号"]]


def write_csv(path: Path, encoding: str, rows: list[list[str]] = ROWS, sep: str = ",") -> Path:
    path.write_bytes("".join(sep.join(r) + "\r\n" for r in rows).encode(encoding))
    return path


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("gbk", "gb18030"),
        ("gb18030", "gb18030"),
        ("utf-16", "utf-16"),  # with BOM
        ("utf-16-le", "utf-16-le"),  # without BOM
        ("utf-16-be", "utf-16-be"),
    ],
)
def test_encodings_detected_and_read(tmp_path: Path, encoding: str, detected: str) -> None:
    src = open_source(str(write_csv(tmp_path / "x.csv", encoding)))
    assert isinstance(src, CsvSource)
    assert src.encoding == detected
    assert src.columns == ["序号", "姓名", "住址"]
    assert [list(r.values or []) for r in src.rows()] == ROWS[1:]


def test_gbk_sample_cut_inside_a_character_still_detected() -> None:
    body = "测试甲".encode("gbk") * 10
    assert detect_encoding(body[:-1], complete=False) == "gb18030"


def test_tsv_and_semicolons(tmp_path: Path) -> None:
    tsv = open_source(str(write_csv(tmp_path / "x.tsv", "utf-8", sep="\t")))
    assert next(r.values for r in tsv.rows()) == ["1", "测试甲", "示例路1号"]
    semi = open_source(str(write_csv(tmp_path / "y.csv", "utf-8", sep=";")))
    assert semi.columns == ["序号", "姓名", "住址"]


def test_bad_rows_are_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    text = "a,b\n1,测试\n3\n".encode()
    path.write_bytes(text + b"4,\xff\xfe\xfa\n" + b"\n5,6,7\n8,9\n" + b"9,x\n" * 2000)
    rows = list(open_source(str(path)).rows())
    assert [(r.ordinal, r.number) for r in rows[:5]] == [(1, 2), (2, 3), (3, 4), (4, 6), (5, 7)]
    assert rows[0].values == ["1", "测试"] and rows[0].problem is None
    assert rows[1].problem == "1 values, the header has 2"
    assert rows[2].problem is not None and "not valid utf-8" in rows[2].problem.lower()
    assert rows[3].problem == "3 values, the header has 2"
    assert rows[4].values == ["8", "9"]
    assert [r.ordinal for r in open_source(str(path)).rows(after=3)][:2] == [4, 5]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"\x00\x01\x02\x03\x89PNG\x00\x00\x00binary\x00", "binary"),
        (b",,\n1,2,3\n", "no header"),
    ],
)
def test_unreadable_files_say_why(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        open_source(str(path))


def test_missing_file_and_misused_options(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.csv"))
    path = write_csv(tmp_path / "x.csv", "utf-8")
    with pytest.raises(SourceError, match="--sheet"):
        open_source(str(path), sheet="Sheet1")
    with pytest.raises(SourceError, match="SQLAlchemy URL"):
        open_source(str(path), table="t")
    with pytest.raises(SourceError, match="needs SQL"):
        open_source(str(path), order_column="id")


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    lines = [
        json.dumps({"id": 1, "name": "测试甲"}, ensure_ascii=False),
        json.dumps({"id": 2, "name": "测试乙", "extra": True}),
        "not json",
        "[1, 2]",
        "",
        json.dumps({"id": 3}),
    ]
    path.write_text("\n".join(lines) + "\n")
    src = open_source(str(path))
    assert src.columns == ["id", "name", "extra"]
    rows = list(src.rows())
    assert rows[0].values == [1, "测试甲", None]
    assert rows[1].values == [2, "测试乙", True]
    assert rows[2].problem is not None and rows[2].problem.startswith("invalid JSON")
    assert rows[3].problem == "not a JSON object"
    assert (rows[4].number, rows[4].values) == (6, [3, None, None])


def test_xlsx_named_sheet(tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = "说明"
    wb.active.append(["this sheet is notes"])
    ws = wb.create_sheet("居民")
    ws.append(["身份证号", "姓名", "登记日期", "金额", None])
    ws.append(["999999197001010009", "测试甲", datetime(2026, 1, 2), 12.5])
    ws.append([None, None, None, None])  # blank row: skipped
    ws.append(["999999197102020011", "测试乙", datetime(2026, 1, 3), 7, "stray"])
    path = tmp_path / "book.xlsx"
    wb.save(path)
    src = open_source(str(path), sheet="居民")
    assert src.columns == ["身份证号", "姓名", "登记日期", "金额"]
    rows = list(src.rows())
    assert rows[0].values == ["999999197001010009", "测试甲", datetime(2026, 1, 2), 12.5]
    assert (rows[1].number, rows[1].problem) == (4, "values beyond the header's 4 columns")
    assert open_source(str(path)).columns == ["this sheet is notes"]  # default: first sheet
    with pytest.raises(SourceError, match="no sheet 'Residents'; its sheets: 说明, 居民"):
        open_source(str(path), sheet="Residents")
    (tmp_path / "fake.xlsx").write_text("a,b\n")
    with pytest.raises(SourceError, match=r"not a readable \.xlsx"):
        open_source(str(tmp_path / "fake.xlsx"))


def test_sql_table_query_and_watermark(tmp_path: Path) -> None:
    db = tmp_path / "legacy.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER, name TEXT, updated_at TEXT)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?, ?)",
        [(3, "c", "2026-01-03"), (1, "a", "2026-01-01"), (2, "b", "2026-01-02")],
    )
    con.commit()
    con.close()
    url = f"sqlite:///{db}"
    table = SqlSource(url, table="t", order_column="id")
    assert table.columns == ["id", "name", "updated_at"]
    assert [r.values[0] for r in table.rows() if r.values] == [1, 2, 3]
    assert [r.values[0] for r in table.rows(watermark=1) if r.values] == [2, 3]
    query = SqlSource(
        url, query="SELECT id, name, updated_at FROM t WHERE id > 1", order_column="updated_at"
    )
    assert [r.values[1] for r in query.rows(watermark="2026-01-02") if r.values] == ["c"]
    with pytest.raises(SourceError, match="no column 'nope'"):
        SqlSource(url, table="t", order_column="nope")


@pytest.mark.parametrize(
    ("url", "kw", "message"),
    [
        ("nosuchdb://x/y", {"table": "t"}, "bad SQLAlchemy URL"),
        ("sqlite:///{tmp}/db.sqlite", {"table": "missing"}, "no such table"),
        ("sqlite:///{tmp}/db.sqlite", {"query": "SELECT * FROM gone"}, "no such table: gone"),
        ("sqlite:///{tmp}/db.sqlite", {}, "exactly one of"),
        ("postgresql+psycopg://u:hunter2@127.0.0.1:1/x", {"table": "t"}, "127.0.0.1"),
    ],
)
def test_bad_sql_sources_say_why(
    tmp_path: Path, url: str, kw: dict[str, str], message: str
) -> None:
    with pytest.raises(SourceError, match=message) as err:
        SqlSource(url.format(tmp=tmp_path), **kw)
    assert "hunter2" not in str(err.value)  # a password is never repeated


def test_bom_constants() -> None:
    assert detect_encoding(codecs.BOM_UTF8 + b"a,b\n", True) == "utf-8-sig"
