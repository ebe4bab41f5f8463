"""Schema inference from a sample of rows: names, types, nullability, classification.

Pure: takes headers and sampled values (strings from text files, typed values from
spreadsheets and databases) and returns a ``Mapping`` proposal. ``align`` fits a proposal to
the subject's latest schema so an evolving spreadsheet gets a compatible new version.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ingest import detect
from ingest.errors import SourceError
from ingest.mapping import TYPES, FieldSpec, Mapping

SAMPLE_ROWS = 1000

# Common headers of Chinese government exports → field names.
ZH_NAMES = {
    "姓名": "name",
    "名字": "name",
    "性别": "gender",
    "民族": "ethnicity",
    "出生日期": "birth_date",
    "身份证号": "id_number",
    "身份证号码": "id_number",
    "公民身份号码": "id_number",
    "证件号码": "id_number",
    "手机号": "mobile",
    "手机号码": "mobile",
    "联系电话": "phone",
    "电话": "phone",
    "住址": "address",
    "地址": "address",
    "家庭住址": "home_address",
    "户籍地址": "household_address",
    "邮箱": "email",
    "电子邮箱": "email",
    "银行卡号": "bank_card",
    "银行账号": "bank_account",
    "统一社会信用代码": "credit_code",
    "单位名称": "org_name",
    "企业名称": "company_name",
    "金额": "amount",
    "补贴金额": "subsidy_amount",
    "登记时间": "registered_at",
    "日期": "date",
    "登记日期": "registered_on",
    "更新时间": "updated_at",
    "创建时间": "created_at",
    "备注": "remarks",
    "编号": "number",
    "序号": "seq",
    "区县": "district",
    "街道": "street",
    "年龄": "age",
}


def field_name(header: str, index: int) -> str:
    """A valid Avro name for a header: ASCII words in snake_case, known Chinese headers
    translated, anything else ``col_<n>`` (the header itself stays in the field's doc)."""
    h = unicodedata.normalize("NFKC", header).strip()
    if h in ZH_NAMES:
        return ZH_NAMES[h]
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", h)
    snake = re.sub(r"[^A-Za-z0-9]+", "_", snake).strip("_").lower()
    if not snake or not snake.isascii() or len(snake) < len(h) // 2:
        return f"col_{index + 1}"
    return f"_{snake}" if snake[0].isdigit() else snake


def unique_names(headers: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i, h in enumerate(headers):
        name, n = field_name(h, i), 2
        base = name
        while name in out:
            name, n = f"{base}_{n}", n + 1
        out.append(name)
    return out


# -- value types -------------------------------------------------------------------------
_INT = re.compile(r"^[+-]?(0|[1-9]\d{0,17})$")
_FIXED = re.compile(r"^[+-]?\d+\.(\d+)$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
BOOLEANS = {
    "true": True,
    "false": False,
    "TRUE": True,
    "FALSE": False,
    "True": True,
    "False": False,
}
_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$|^(\d{4})年(\d{1,2})月(\d{1,2})日$")
_TS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_date(s: str) -> date | None:
    m = _DATE.match(s.strip())
    if not m:
        return None
    y, mo, d = (int(g) for g in (m.groups()[:3] if m.group(1) else m.groups()[3:]))
    try:
        return date(y, mo, d)
    except ValueError:
        return None


def parse_timestamp(s: str) -> datetime | None:
    v = s.strip()
    if not _TS.match(v):
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None


# What exports write for "no value"; in a column of numbers, dates or booleans they are null
# (a text column keeps them as text).
NULL_MARKERS = frozenset({"null", "NULL", "Null", "N/A", "n/a", "NA", "-", "--", "—", "无", "空"})


def is_empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and (not v.strip() or v.strip() in NULL_MARKERS))


def value_type(v: Any) -> str | None:
    """The narrowest type of one value (None for an empty one or a null marker)."""
    if is_empty(v):
        return None
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "long"
    if isinstance(v, float):
        return "double"
    if isinstance(v, Decimal):
        return "decimal"
    if isinstance(v, datetime):
        return "timestamp-millis" if v.tzinfo else "local-timestamp-millis"
    if isinstance(v, date):
        return "date"
    if not isinstance(v, str):
        return "string"
    s = v.strip()
    if s in BOOLEANS:
        return "boolean"
    if _INT.match(s):
        return "long"
    if _FIXED.match(s):
        return "decimal"
    if _FLOAT.match(s):
        return "double"
    if parse_date(s):
        return "date"
    if ts := parse_timestamp(s):
        return "timestamp-millis" if ts.tzinfo else "local-timestamp-millis"
    return "string"


_WIDER = {("long", "decimal"): "decimal", ("long", "double"): "double"}
_WIDER |= {(b, a): c for (a, b), c in list(_WIDER.items())}
_WIDER[("decimal", "double")] = _WIDER[("double", "decimal")] = "double"


def column_type(values: Sequence[Any]) -> tuple[str, bool, int | None, int | None]:
    """(type, nullable, precision, scale) of a sampled column."""
    found: str | None = None
    nullable = False
    digits, scale = 1, 0
    for v in values:
        t = value_type(v)
        if t is None:
            nullable = True
            continue
        if t == "decimal":
            d = v if isinstance(v, Decimal) else Decimal(str(v).strip())
            exp = d.as_tuple().exponent
            s = -exp if isinstance(exp, int) and exp < 0 else 0
            scale = max(scale, s)
            digits = max(digits, len(d.as_tuple().digits) - s)
        elif t == "long":
            digits = max(digits, len(str(abs(int(v)))))
        found = t if found in (None, t) else _WIDER.get((str(found), t), "string")
    if found is None:
        return "string", True, None, None
    if found == "decimal":
        precision = digits + scale
        return found, nullable, 18 if precision <= 18 else min(38, precision), scale
    return found, nullable, None, None


# -- proposal ----------------------------------------------------------------------------
def propose(
    topic: str, headers: Sequence[str], sample: Sequence[Sequence[Any]], key_column: str | None
) -> Mapping:
    if not sample:
        raise SourceError("the source has a header but no data rows: nothing to import")
    names = unique_names(headers)
    fields: list[FieldSpec] = []
    for i, (header, name) in enumerate(zip(headers, names, strict=True)):
        column = [row[i] for row in sample]
        texts = [str(v) for v in column if isinstance(v, str | int) and not isinstance(v, bool)]
        kind = detect.column_kind(header or name, texts)
        vtype, nullable, precision, scale = column_type(column)
        if kind is not None and kind not in (detect.Kind.PERSON_NAME, detect.Kind.ADDRESS):
            vtype, precision, scale = "string", None, None  # identifiers keep their digits
        classification, _ = detect.PROPOSAL[kind] if kind else ("internal", False)
        fields.append(
            FieldSpec(
                column=header,
                name=name,
                type=vtype,
                nullable=nullable,
                classification=classification,
                detected=kind.value if kind else None,
                precision=precision,
                scale=scale,
            )
        )
    fields = _mark_subject(fields)
    dataset = topic.partition(".")[2]
    record = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", dataset) if p) or "Row"
    dept = re.sub(r"[^A-Za-z0-9_]", "_", topic.partition(".")[0])
    return Mapping(
        topic=topic,
        fields=fields,
        key_column=key_column,
        record_name=record if not record[0].isdigit() else f"R{record}",
        namespace=f"exchange.imported.{dept}",
    )


def _mark_subject(fields: list[FieldSpec]) -> list[FieldSpec]:
    for kind in detect.SUBJECT_PREFERENCE:
        for i, f in enumerate(fields):
            if f.detected == kind.value:
                return [*fields[:i], replace(f, data_subject=True), *fields[i + 1 :]]
    return fields


# -- evolution ---------------------------------------------------------------------------
def align(proposal: Mapping, latest: dict[str, Any]) -> Mapping:
    """Fit a proposal to the subject's latest schema: known fields keep their type and
    classification (the registry refuses a downgrade anyway), new columns become optional
    fields with a null default, fields the source lacks are kept if they have a default.
    Raises SourceError when the result could not be a compatible version."""
    old = {f["name"]: f for f in latest.get("fields", [])}
    fields: list[FieldSpec] = []
    for f in proposal.fields:
        prior = old.pop(f.name, None)
        if prior is None:
            fields.append(replace(f, nullable=True))
            continue
        fields.append(_from_schema(f, prior))
    missing = [name for name, f in old.items() if "default" not in f]
    if missing:
        raise SourceError(
            f"the source has no column for field(s) {', '.join(missing)} of the topic's "
            "current schema, which have no default: a new version would be incompatible "
            "(add the column(s), or rename headers with --mapping)"
        )
    return replace(
        proposal,
        fields=fields,
        kept=list(old.values()),
        record_name=str(latest.get("name", proposal.record_name)).rpartition(".")[2],
        namespace=str(latest.get("namespace", proposal.namespace)),
    )


def _from_schema(f: FieldSpec, prior: dict[str, Any]) -> FieldSpec:
    t = prior["type"]
    nullable = isinstance(t, list) and "null" in t
    if isinstance(t, list):
        rest = [b for b in t if b != "null"]
        if len(rest) != 1:
            raise SourceError(f"field {f.name}: the import cannot fill a union type {t}")
        t = rest[0]
    name, precision, scale = _type_name(f.name, t)
    return replace(
        f,
        type=name,
        nullable=nullable,
        classification=str(prior.get("classification", "internal")),
        data_subject=bool(prior.get("data_subject", False)),
        precision=precision,
        scale=scale,
    )


def _type_name(field: str, t: Any) -> tuple[str, int | None, int | None]:
    if isinstance(t, dict):
        if t.get("logicalType") == "decimal":
            return "decimal", int(t.get("precision", 18)), int(t.get("scale", 0))
        for name, avro in TYPES.items():
            if avro == {"type": t.get("type"), "logicalType": t.get("logicalType")}:
                return name, None, None
        t = t.get("type") if "logicalType" not in t else t
    if isinstance(t, str) and t in TYPES and TYPES[t] == t:
        return t, None, None
    raise SourceError(f"field {field}: the import cannot fill values of type {t}")


def to_decimal(v: Any) -> Decimal:
    try:
        return v if isinstance(v, Decimal) else Decimal(str(v).strip())
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
