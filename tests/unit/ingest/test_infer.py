"""Inference (names, types, nullability, classification proposal), evolution, conversion."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader

from examples.generate_residents import HEADER, resident_id, row
from ingest import infer
from ingest import mapping as mappings
from ingest.convert import BadValue, Encoder, converter
from ingest.errors import SourceError
from ingest.mapping import FieldSpec


def test_field_names_are_valid_avro_and_unique() -> None:
    headers = ["姓名", "Full Name", "full-name", "2024 total", "备注说明", "", "身份证号"]
    assert infer.unique_names(headers) == [
        "name",
        "full_name",
        "full_name_2",
        "_2024_total",
        "col_5",
        "col_6",
        "id_number",
    ]
    assert infer.field_name("updatedAt", 0) == "updated_at"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "22", "-3"], ("long", False, None, None)),
        (["1", "", "3"], ("long", True, None, None)),
        (["1", "N/A", "无", "-", "3"], ("long", True, None, None)),  # null markers
        (["无", "有"], ("string", True, None, None)),
        (["0571", "0572"], ("string", False, None, None)),  # leading zeros are codes
        (["12.50", "3.1", "7"], ("decimal", False, 18, 2)),
        (["1e3", "2.5"], ("double", False, None, None)),
        (["true", "FALSE"], ("boolean", False, None, None)),
        (["2026-01-02", "2026/1/3", "2026年1月4日"], ("date", False, None, None)),
        (
            ["2026-01-02 08:00", "2026-01-02T09:30:15"],
            ("local-timestamp-millis", False, None, None),
        ),
        (
            ["2026-01-02T08:00:00Z", "2026-01-02T08:00:00+08:00"],
            ("timestamp-millis", False, None, None),
        ),
        (["2026-01-02", "soon"], ("string", False, None, None)),
        (["", None], ("string", True, None, None)),
        ([1, 2.5], ("double", False, None, None)),
        ([datetime(2026, 1, 1), None], ("local-timestamp-millis", True, None, None)),
        ([date(2026, 1, 1)], ("date", False, None, None)),
        ([Decimal("1.234")], ("decimal", False, 18, 3)),
        (["1" * 25 + ".5"], ("decimal", False, 26, 1)),  # wider than a long: a wide decimal
    ],
)
def test_column_types(values: list[Any], expected: tuple[Any, ...]) -> None:
    assert infer.column_type(values) == expected


def test_proposal_classifies_the_sample_export() -> None:
    sample = [row(i) for i in range(50)]
    m = infer.propose("civil.residents", HEADER, sample, None)
    by = {f.name: f for f in m.fields}
    assert by["id_number"].classification == "secret" and by["id_number"].data_subject
    assert by["id_number"].detected == "resident_id" and by["id_number"].type == "string"
    assert by["mobile"].classification == "sensitive" and not by["mobile"].data_subject
    assert by["mobile"].type == "string"  # digits, but an identifier
    assert by["name"].classification == "sensitive"
    assert by["home_address"].classification == "sensitive"
    assert by["seq"].classification == "internal" and by["seq"].type == "long"
    assert by["birth_date"].type == "date"
    assert by["subsidy_amount"].type == "decimal"
    schema = m.schema()
    assert schema["name"] == "Residents" and schema["namespace"] == "exchange.imported.civil"
    doc = {f["name"]: f.get("doc") for f in schema["fields"]}
    assert doc["id_number"] == "身份证号"  # the original header is kept
    parse_schema(schema)  # valid Avro
    assert sum(1 for f in m.fields if f.data_subject) == 1


def test_mobile_is_the_subject_without_an_identity_number() -> None:
    m = infer.propose("a.b", ["tel", "note"], [["13800138000", "x"], ["13900139000", "y"]], None)
    assert m.fields[0].data_subject and m.fields[0].classification == "sensitive"


def test_header_only_is_refused() -> None:
    with pytest.raises(SourceError, match="no data rows"):
        infer.propose("a.b", ["x"], [], None)


def test_align_keeps_known_fields_and_adds_optional_ones() -> None:
    latest = {
        "type": "record",
        "name": "Stock",
        "namespace": "ns",
        "fields": [
            {"name": "item", "type": "string", "classification": "sensitive"},
            {"name": "count", "type": "long"},
            {"name": "old", "type": ["null", "string"], "default": None},
        ],
    }
    proposal = infer.propose("a.stock", ["item", "count", "unit"], [["rice", "x", "kg"]], None)
    m = infer.align(proposal, latest)
    by = {f.name: f for f in m.fields}
    assert by["item"].classification == "sensitive"  # never lowered
    assert by["count"].type == "long"  # the topic's type wins; "x" will be a rejected row
    assert by["unit"].nullable
    assert [k["name"] for k in m.kept] == ["old"]
    assert m.schema()["name"] == "Stock"
    with pytest.raises(SourceError, match="count"):
        infer.align(infer.propose("a.stock", ["item"], [["rice"]], None), latest)


def test_mapping_saved_and_loaded(tmp_path: Path) -> None:
    m = infer.propose("civil.residents", HEADER, [row(i) for i in range(5)], "序号")
    path = tmp_path / "mapping.json"
    m.save(path)
    assert mappings.load(path, "civil.residents") == m
    with pytest.raises(SourceError, match=r"for topic civil\.residents"):
        mappings.load(path, "other.topic")
    bad = path.read_text().replace('"secret"', '"top-secret"')
    path.write_text(bad)
    with pytest.raises(SourceError, match="classification must be one of"):
        mappings.load(path, "civil.residents")


def test_encoder_round_trip_and_reasons() -> None:
    m = infer.propose("civil.residents", HEADER, [row(i) for i in range(5)], "序号")
    enc = Encoder(m, HEADER, 42)
    key, value = enc.encode(row(3))
    assert key == b"4" and value[:5] == b"\0\0\0\0\x2a"
    back = schemaless_reader(BytesIO(value[5:]), parse_schema(m.schema()), None)
    assert back["id_number"] == resident_id(3) and back["name"] == "测试丁"
    assert back["subsidy_amount"] == Decimal("103.03")
    assert back["birth_date"] == date(1973, 4, 4)
    broken = row(3)
    broken[6] = "103.031"  # three decimal places for a scale of 2
    with pytest.raises(BadValue, match="'补贴金额': more than 2 decimal places"):
        enc.encode(broken)
    broken[6] = "103.03"
    broken[0] = ""
    with pytest.raises(BadValue, match="'序号' is empty but required"):
        enc.encode(broken)


@pytest.mark.parametrize(
    ("ftype", "raw", "value"),
    [
        ("long", "12", 12),
        ("long", 12.0, 12),
        ("int", "2147483648", BadValue),
        ("boolean", "是", BadValue),
        ("boolean", "1", True),
        ("double", "1.5", 1.5),
        ("string", 13800138000.0, "13800138000"),  # a spreadsheet's number as text
        ("date", "2026/02/30", BadValue),
        ("timestamp-millis", "2026-01-02T08:00:00", BadValue),  # no offset
        ("timestamp-millis", "2026-01-02T08:00:00+08:00", datetime(2026, 1, 2, 0, tzinfo=UTC)),
        ("local-timestamp-millis", "2026-01-02 08:00", datetime(2026, 1, 2, 8)),
    ],
)
def test_converters(ftype: str, raw: Any, value: Any) -> None:
    conv = converter(FieldSpec("c", "c", ftype, nullable=True))
    if value is BadValue:
        with pytest.raises(BadValue):
            conv(raw)
    else:
        assert conv(raw) == value
    assert conv("") is None
    assert conv("N/A") == ("N/A" if ftype == "string" else None)  # text keeps its markers


def test_prompt_edits_of_the_proposal() -> None:
    from cli.import_cmd import _edit

    m = infer.propose("civil.residents", HEADER, [row(i) for i in range(5)], None)
    m = _edit(m, "birth_date = secret")
    m = _edit(m, "mobile+subject")
    m = _edit(m, "id_number-subject")
    by = {f.name: f for f in m.fields}
    assert by["birth_date"].classification == "secret"
    assert by["mobile"].data_subject and not by["id_number"].data_subject
    with pytest.raises(SourceError, match="classification must be one of"):
        _edit(m, "name=confidential")
    with pytest.raises(SourceError, match="no field 'nope'"):
        _edit(m, "nope=public")
