"""Property (issue 12.1), without a broker: every random schema with classified fields at
random depths and in random containers is accepted by the registration check, and every
random record sealed, Avro-encoded under the sealed schema and decoded again holds no
sensitive value in its bytes, opens back to itself, and shows none when nothing is granted."""

from __future__ import annotations

import copy
import io
import json
import secrets
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, note, settings

from exchange.avro_validation import problems
from exchange.crypto import FieldCrypto, sealed_fields
from exchange.crypto.sealing import completed
from schemas.canonical import fastavro_schema, parse
from schemas.sealing_rules import require_sealable, sealed_form
from tests.support.crypto import memory_field_crypto
from tests.support.random_schemas import Values, cases


@pytest.fixture(scope="module")
def crypto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FieldCrypto]:
    with memory_field_crypto(tmp_path_factory.mktemp("crypto"), secrets.token_bytes(32)) as c:
        yield c


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_sealed_at_every_depth(
    case: tuple[dict[str, Any], list[Any], Values], crypto: FieldCrypto
) -> None:
    schema, records, values = case
    text = json.dumps(schema)
    note(text)
    fields = parse(text).fields
    require_sealable(text, [], fields)
    plain = fastavro_schema(text)
    sealed = sealed_form(plain, fields)
    assert sealed is not None or not values.secrets
    layout = sealed_fields(sealed) if sealed is not None else sealed_fields(schema)
    wire = fastavro.parse_schema(copy.deepcopy(sealed if sealed is not None else schema))
    args: dict[str, Any] = {"topic": "p.t", "sealed_schema_id": 9, "key": b"k", "fields": layout}
    for record in records:
        note(json.dumps(record))
        assert problems(record, plain) == []
        whole = completed(plain, record)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, wire, crypto.seal(owner="p", record=whole, **args))
        raw = buf.getvalue()
        assert [x for x in values.secrets if x.encode() in raw] == []
        decoded = fastavro.schemaless_reader(io.BytesIO(raw), wire, None)
        assert crypto.open(record=decoded, granted=set(layout), **args).value == whole
        hidden = json.dumps(crypto.open(record=decoded, granted=set(), **args).value)
        assert [x for x in values.secrets if x in hidden] == []
