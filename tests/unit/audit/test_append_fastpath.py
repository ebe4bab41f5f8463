"""The append hot path gives byte for byte what the general path gives.

``record_entry`` skips building the event and copying its data when the data is plain JSON;
``SubjectHasher`` reuses a keyed HMAC; ``insert_rows`` hands tuples to the driver. Each is
checked against the slow, obviously right form it replaces.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from audit.events import _strict, from_record, record_entry
from audit.keys import SubjectHasher
from audit.models import AuditEventRow, AuditSubjectRow
from audit.store import EVENT_COLUMNS, SUBJECT_COLUMNS, insert_rows
from exchange.auditing import AuditRecord
from exchange.db import make_engine, migrate, session_factory, transaction

TS = "2026-01-01T00:00:00.000000Z"
PREV = "ab" * 32

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.text(max_size=8)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.binary(max_size=4)
)
keys = st.text(max_size=6) | st.integers(-3, 3) | st.booleans()
values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.tuples(kids, kids)
        | st.frozensets(st.integers(0, 9), max_size=3)
        | st.dictionaries(keys, kids, max_size=4)
    ),
    max_leaves=12,
)
names = st.text(max_size=10)


def slow(rec: AuditRecord, index: int, subjects: list[str]) -> bytes:
    return from_record(rec, index, PREV, tuple(subjects), TS).canonical()


def encoded_or_error(f: Any, *args: Any) -> bytes | type[BaseException]:
    try:
        return bytes(f(*args))
    except (UnicodeEncodeError, ValueError) as exc:  # e.g. lone surrogates: both must refuse
        return type(exc)


@settings(max_examples=300)
@given(
    data=st.dictionaries(keys, values, max_size=5),
    type_=names,
    actor=names,
    department=st.none() | names,
    topic=st.none() | names,
    subjects=st.lists(st.text(alphabet="0123456789abcdef", min_size=4, max_size=4), max_size=3),
    index=st.integers(0, 2**40),
)
def test_record_entry_is_the_canonical_event(
    data: dict[Any, Any],
    type_: str,
    actor: str,
    department: str | None,
    topic: str | None,
    subjects: list[str],
    index: int,
) -> None:
    rec = AuditRecord(type_, actor, department, topic, data, outcome="denied")
    subjects = sorted(set(subjects))
    fast = encoded_or_error(record_entry, rec, index, PREV, subjects, TS)
    assert fast == encoded_or_error(slow, rec, index, subjects)


class Colour(StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({"a": [1, "x", None, True, {"b": -(2**53) + 1}]}, True),
        ({"a": 2**53}, False),  # JCS numbers stop at 2**53: json_safe makes it a string
        ({"a": 1.0}, False),  # floats need ES6 formatting
        ({"a": (1, 2)}, False),  # json_safe turns tuples into lists
        ({"é": 1}, False),  # JCS sorts keys by UTF-16 units, Python by code points
        ({1: "a"}, False),
        ({"a": Colour.RED}, False),  # a str subclass: the general path decides
        ({"a": b"x"}, False),
    ],
)
def test_strict_accepts_only_plain_json(value: object, plain: bool) -> None:
    assert _strict(value) is plain


def test_subject_hasher_is_hmac_sha256() -> None:
    key = b"k" * 32
    hasher = SubjectHasher(key)
    for subject in ("33010000000000001", "", "é" * 40):
        assert hasher(subject) == hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()
    assert hasher("a") == hasher("a")  # the keyed state is copied, never consumed


def test_insert_rows_writes_what_the_orm_reads_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    row = (7, TS, "t.x", "actor", None, "topic", "ok", b'{"v":1}', b"\x00" * 32)
    with transaction(sessions) as s:
        insert_rows(s, AuditEventRow, EVENT_COLUMNS, [row])
        insert_rows(s, AuditSubjectRow, SUBJECT_COLUMNS, [(0, "ab" * 32, 7), (0, "cd" * 32, 7)])
    with transaction(sessions) as s:
        ev = s.get(AuditEventRow, 7)
        assert ev is not None
        got = tuple(getattr(ev, c) for c in EVENT_COLUMNS)
        subjects = s.execute(select(AuditSubjectRow.subject, AuditSubjectRow.idx)).all()
    assert got == row
    assert sorted(tuple(r) for r in subjects) == [("ab" * 32, 7), ("cd" * 32, 7)]
    # Stored as BLOBs, exactly as the ORM stores them (verify compares the bytes as stored).
    raw = sqlite3.connect(tmp_path / "a.db")
    kinds = raw.execute("SELECT typeof(entry), typeof(leaf_hash) FROM audit_events").fetchone()
    raw.close()
    assert kinds == ("blob", "blob")
    engine.dispose()


TRICKY = [
    "".join(chr(i) for i in range(0x20)),  # every control character: \\uXXXX or short escapes
    '"\\/\x7f',  # quote, backslash, slash, DEL
    "\u2028\u2029\ufeff",  # line/paragraph separators, BOM: written as they are
    "é中\U0001f600",  # non-ASCII, astral plane
    "\ud800",  # a lone surrogate: neither encoder may write it
]


@pytest.mark.parametrize("text", TRICKY)
def test_record_entry_writes_strings_as_the_stdlib_encoder_does(text: str) -> None:
    """The fast path's orjson against ``canonical_json`` (json.dumps) on the strings where
    encoders differ most, in the data and in the indexed columns."""
    rec = AuditRecord(text, actor=text, department=text, topic=text, data={"k": [text, {"n": 1}]})
    fast = encoded_or_error(record_entry, rec, 3, PREV, ["ab" * 32], TS)
    assert fast == encoded_or_error(slow, rec, 3, ["ab" * 32])
    assert isinstance(fast, bytes) is (text != "\ud800")
