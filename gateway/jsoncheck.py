"""JSON that Python's parser accepts but later code cannot take, refused as 422 at the door.

- Nesting: ``json`` raises RecursionError near 1,000 levels, and anything that walks a value
  (pydantic, fastavro, our own validators) can hit the limit much earlier. Request bodies
  may nest at most :data:`MAX_DEPTH` containers.
- Lone surrogates: ``"\\ud800"`` parses to a ``str`` that cannot be encoded as UTF-8, so
  writing it (Kafka key, Avro string, database row) fails later. Refused here instead.
- Numbers that are not finite: ``NaN``/``Infinity`` (not JSON, but Python reads them) and
  ``1e999`` (read as infinity) would be stored and then break every JSON answer carrying them.

The value walk runs only when a byte scan finds a surrogate or a huge number; the depth walk
only when a body has more containers than the limit, and then level by level over containers
(about 3 ms for a 500-record publish batch, under half of its parse) — cheaper than a record
that nests 600 levels down a recursive schema and then breaks every subscriber's delivery.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from exchange.errors import InvalidInput

MAX_DEPTH = 64
# A \\uD800-\\uDFFF escape, or a surrogate's UTF-8 bytes (json decodes with surrogatepass).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_HUGE = re.compile(rb"[eE][+-]?\d{3}|\d{300}")  # exponents of 100+, or 300+ digits


class Unacceptable(InvalidInput):
    """Valid JSON syntax that the exchange refuses to carry."""


class TooDeep(Unacceptable):
    code = "json_too_deep"


class InvalidText(Unacceptable):
    code = "invalid_unicode"


class InvalidNumber(Unacceptable):
    code = "invalid_number"


def loads(body: bytes, *, max_depth: int | None = MAX_DEPTH) -> Any:
    """Parse a JSON request body; InvalidInput (or a subclass) for anything unacceptable."""
    try:
        # What json.loads(body, parse_constant=...) does, without building a decoder per call.
        value = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except RecursionError:
        raise _too_deep(max_depth) from None
    except ValueError as exc:  # includes bytes that are not UTF-8
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    check(value, body, max_depth=max_depth)
    return value


def check(value: Any, body: bytes, *, max_depth: int | None = MAX_DEPTH) -> None:
    """Refuse ``value`` (parsed from ``body``) if it nests deeper than ``max_depth`` or holds
    a string that is not valid Unicode."""
    texts = _SURROGATE.search(body) is not None
    numbers = _HUGE.search(body) is not None
    if texts or numbers:
        _scalars(value, texts=texts, numbers=numbers)
    if max_depth is None or body.count(b"[") + body.count(b"{") <= max_depth:
        return  # too few containers to nest that deep: no walk needed
    if _deeper(value, max_depth):
        raise _too_deep(max_depth)


def _deeper(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (level by level, no recursion)."""
    level = [value] if type(value) is dict or type(value) is list else []
    for _ in range(limit):
        below: list[Any] = []
        for node in level:
            items = node.values() if type(node) is dict else node
            below += [v for v in items if type(v) is dict or type(v) is list]
        if not below:
            return False
        level = below
    return True


def _scalars(value: Any, *, texts: bool, numbers: bool) -> None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if texts:
                    _text(k)
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)
        elif texts and isinstance(node, str):
            _text(node)
        elif numbers and isinstance(node, float) and not math.isfinite(node):
            raise InvalidNumber("a number is too large to be represented (beyond ±1.8e308)")


def _not_a_number(name: str) -> Any:
    raise InvalidNumber(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_not_a_number)


def _text(s: str) -> None:
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidText(
                "a string contains a lone UTF-16 surrogate (such as \\ud800): "
                "text must be valid Unicode"
            ) from None


def _too_deep(limit: int | None) -> TooDeep:
    return TooDeep(f"JSON nested more than {limit or 'about 1,000'} levels deep")
