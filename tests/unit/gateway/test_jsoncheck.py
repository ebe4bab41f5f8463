"""The JSON guard: nesting and lone surrogates refused, ordinary bodies untouched (pure)."""

from __future__ import annotations

import json

import pytest

from exchange.errors import InvalidInput
from gateway import jsoncheck
from gateway.jsoncheck import MAX_DEPTH, InvalidNumber, InvalidText, TooDeep


def nested(depth: int, leaf: str = "1") -> bytes:
    return ('{"a":' * depth + leaf + "}" * depth).encode()


def test_ordinary_bodies_parse() -> None:
    body = json.dumps({"records": [{"key": "ключ", "value": {"name": "名字 😀"}}] * 100})
    assert jsoncheck.loads(body.encode())["records"][0]["value"]["name"] == "名字 😀"
    assert jsoncheck.loads(b'"\\ud83d\\ude00"') == "😀"  # a proper surrogate pair


def test_depth_limit_is_exact() -> None:
    jsoncheck.loads(nested(MAX_DEPTH))
    jsoncheck.loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    with pytest.raises(TooDeep):
        jsoncheck.loads(nested(MAX_DEPTH + 1))
    with pytest.raises(TooDeep):
        jsoncheck.loads(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_parser_recursion_is_a_clear_refusal(depth: int) -> None:
    with pytest.raises(TooDeep):
        jsoncheck.loads(b"[" * depth + b"]" * depth)
    with pytest.raises(TooDeep):
        jsoncheck.loads(nested(depth), max_depth=None)


def test_brackets_inside_strings_do_not_count() -> None:
    jsoncheck.loads(json.dumps({"s": "[" * 500, "t": "{" * 500}).encode())


@pytest.mark.parametrize(
    "body",
    [
        b'"\\ud800"',
        b'{"key": "\\udfff"}',
        b'{"\\ud800": 1}',
        b'[["a", {"b": "x\\uDBFFy"}]]',
        '"\ud800"'.encode("utf-8", "surrogatepass"),  # raw surrogate bytes
    ],
)
def test_lone_surrogates_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidText):
        jsoncheck.loads(body)


def test_not_json_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as exc:
        jsoncheck.loads(b"{nope")
    assert not isinstance(exc.value, TooDeep | InvalidText)
    with pytest.raises(InvalidInput):
        jsoncheck.loads(b"\xff\xfe")


@pytest.mark.parametrize(
    "body",
    [b'{"x": NaN}', b'{"x": Infinity}', b"[-Infinity]", b'{"x": 1e999}', b'{"x": -1E+400}',
     b'{"x": 1' + b"0" * 400 + b'.5}'],
)  # fmt: skip
def test_numbers_that_are_not_finite_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidNumber):
        jsoncheck.loads(body)


def test_large_but_finite_numbers_pass() -> None:
    assert jsoncheck.loads(b'{"x": 1e300, "y": "e999 in a string", "z": 12345678901234567890}')
