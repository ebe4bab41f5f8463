"""The hand-written Avro fast paths for sealed strings, bytes, ints and longs write and read
exactly what fastavro does, and refuse what fastavro would not read back."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from exchange.crypto import sealing

VALUES: list[tuple[Any, Any]] = [
    ("double", 1000.5),
    ("double", -0.0),
    ("double", float("inf")),
    ("boolean", True),
    ("boolean", False),
    (["null", "string"], None),
    (["null", "string"], "0571-1234"),
    (["string", "null"], None),
    (["string", "null"], "x"),
    (["null", "long"], 7),
    (["null", "double"], 2.5),
    ("string", ""),
    ("string", "Resident 42"),
    ("string", "é漢字🙂" * 50),
    ("bytes", b""),
    ("bytes", bytes(range(256)) * 3),
    ("int", 0),
    ("int", -1),
    ("int", 63),
    ("int", -64),
    ("int", 2**31 - 1),
    ("int", -(2**31)),
    ("long", 2**63 - 1),
    ("long", -(2**63)),
    ("long", 1234567890123),
]


def _fastavro_bytes(t: Any, v: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, t, v)
    return buf.getvalue()


@pytest.mark.parametrize(("t", "v"), VALUES)
def test_fast_path_matches_fastavro_both_ways(t: Any, v: Any) -> None:
    parsed = sealing.parsed_type(t)
    data = sealing.encode_parsed(parsed, v)
    assert data == _fastavro_bytes(t, v)
    back = sealing.decode_parsed(parsed, data)
    assert back == v and type(back) is type(v)


@pytest.mark.parametrize(
    ("t", "data"),
    [
        ("string", b"\x04a"),  # says 2 bytes, holds 1
        ("string", b"\x02ab"),  # trailing byte
        ("string", b"\x03"),  # negative length
        ("string", b"\x02\xff"),  # not UTF-8
        ("bytes", b""),  # no length at all
        ("int", b"\x80"),  # varint never ends
        ("int", b"\x00\x00"),  # trailing byte
        ("int", _fastavro_bytes("long", 2**31)),  # beyond an int
        ("long", b"\xff" * 11 + b"\x01"),  # longer than any long
        ("double", b"\x00" * 7),  # truncated
        ("double", b"\x00" * 9),  # trailing byte
        ("boolean", b"\x02"),
        (["null", "string"], b"\x04"),  # no third branch
        (["null", "string"], b"\x00\x00"),  # null with trailing bytes
        (["null", "string"], b"\x02\x04a"),  # truncated string
    ],
)
def test_fast_path_refuses_malformed_values(t: Any, data: bytes) -> None:
    with pytest.raises(ValueError):
        sealing.decode_parsed(sealing.parsed_type(t), data)


def test_values_outside_the_fast_path_still_go_through_fastavro() -> None:
    big = sealing.parsed_type("int")  # out of an int's range: as fastavro writes it
    assert sealing.encode_parsed(big, 2**31) == _fastavro_bytes("int", 2**31)
    with pytest.raises(sealing.InvalidInput):
        sealing.encode_parsed(sealing.parsed_type("string"), 5)
    assert sealing.encode_parsed(sealing.parsed_type("double"), 3) == _fastavro_bytes("double", 3)
    fl = sealing.parsed_type("float")
    assert sealing.encode_parsed(fl, 0.1) == _fastavro_bytes("float", 0.1)
    assert sealing.decode_parsed(fl, _fastavro_bytes("float", 0.1)) == fastavro.schemaless_reader(
        io.BytesIO(_fastavro_bytes("float", 0.1)), "float", None
    )
    three = sealing.parsed_type(["null", "string", "long"])
    assert sealing.decode_parsed(three, sealing.encode_parsed(three, 5)) == 5
