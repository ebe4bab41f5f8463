"""Record headers as the librdkafka reader hands them out: (str, bytes) pairs in order,
whatever the client library gave (a list, a dict, None values from other writers)."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.kafka.rdkafka import _headers


class _Message:  # stands in for confluent_kafka.Message, which Python code cannot build
    def __init__(self, headers: Any) -> None:
        self._h = headers

    def headers(self) -> Any:
        return self._h


@pytest.mark.parametrize(
    ("given", "read"),
    [
        (None, ()),
        ([], ()),
        ([("a", b"1"), ("b", b"2")], (("a", b"1"), ("b", b"2"))),
        ([("a", b"1"), ("b", None), ("c", "x")], (("a", b"1"), ("b", b""), ("c", b"x"))),
        ({"a": b"1", "b": None}, (("a", b"1"), ("b", b""))),
    ],
)
def test_headers_are_str_bytes_pairs_in_order(given: Any, read: tuple[Any, ...]) -> None:
    assert _headers(_Message(given)) == read  # type: ignore[arg-type]
