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
    with pytest.raises(ValueError):  # the bound decoder (delivery's flat open) refuses it too
        sealing.decoder(sealing.parsed_type(t))(data)


@pytest.mark.parametrize(("t", "v"), VALUES)
def test_the_bound_decoder_reads_what_fastavro_wrote(t: Any, v: Any) -> None:
    back = sealing.decoder(sealing.parsed_type(t))(_fastavro_bytes(t, v))
    assert back == v and type(back) is type(v)


@pytest.mark.parametrize(
    ("t", "data"),
    [
        ("string", b"\x80\x01" + b"x" * 64),  # a two-byte length
        ("string", b"\x80\x01" + b"x" * 63),  # one short of it
        ("int", b"\x7f"),  # the largest one-byte value (-64)
        ("int", b"\xfe\xff\xff\xff\x0f"),  # 2**31 - 1
        ("int", b"\x80\x80\x80\x80\x10"),  # 2**31: beyond an int
        ("long", b"\x01\x00"),  # one-byte value, trailing byte
    ],
)
def test_the_bound_decoder_agrees_with_decode_parsed(t: Any, data: bytes) -> None:
    parsed = sealing.parsed_type(t)
    try:
        expected: Any = sealing.decode_parsed(parsed, data)
    except ValueError:
        with pytest.raises(ValueError):
            sealing.decoder(parsed)(data)
        return
    assert sealing.decoder(parsed)(data) == expected


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


@pytest.mark.parametrize("t", ["int", "long"])
def test_the_unrolled_short_integers_agree_with_decode_parsed(t: str) -> None:
    """Every 1-3 byte input the decoder reads without its loop, canonical or not, and some
    that it must refuse (a continuation bit on the last byte, a missing one before it)."""
    parsed = sealing.parsed_type(t)
    decode = sealing.decoder(parsed)
    samples = [bytes([a]) for a in range(256)]
    samples += [bytes([a, b]) for a in range(0, 256, 3) for b in range(0, 256, 5)]
    samples += [
        bytes([a, b, c])
        for a in (0x00, 0x7F, 0x80, 0xC1, 0xFF)
        for b in (0x00, 0x7F, 0x80, 0xFF)
        for c in (0x00, 0x01, 0x7F, 0x80, 0xFF)
    ]
    for data in samples:
        try:
            expected: Any = sealing.decode_parsed(parsed, data)
        except ValueError:
            with pytest.raises(ValueError):
                decode(data)
            continue
        assert decode(data) == expected, data


@pytest.mark.parametrize("t", ["int", "long", "string"])
def test_the_bound_encoder_writes_what_encode_parsed_writes(t: str) -> None:
    parsed = sealing.parsed_type(t)
    encode = sealing.encoder(parsed)
    edges = [0, 1, 63, 64, 8191, 8192, 2**20 - 1, 2**20, 2**31 - 1, 2**31, 2**40]
    ints = [s * v for v in edges for s in (1, -1)] + [-(2**31) - 1, 2**63 - 1, -(2**63)]
    texts = ["", "a", "x" * 63, "x" * 64, "é" * 32, "é" * 31, "漢" * 200]
    for v in [*ints, *texts, 1.5, True, None, b"x"]:
        try:
            expected: Any = sealing.encode_parsed(parsed, v)
        except Exception as exc:
            with pytest.raises(type(exc)):
                encode(v)
            continue
        assert encode(v) == expected, v
