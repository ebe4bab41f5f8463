"""``FieldCrypto.seal`` takes a one-loop path when every sealed field is a top-level field
(what publishing seals for most schemas). It must seal exactly what the general walk seals:
the same DEK (and use count), the same bound context, the same value encoding, the same
refusals; only the nonce differs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from exchange.crypto import FieldCrypto, sealed_fields, sealed_schema
from exchange.errors import InvalidInput
from tests.support.crypto import memory_field_crypto

TOPIC = "health.people"
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Person",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "income", "type": "long"},
        {"name": "age", "type": "int"},
        {"name": "phone", "type": ["null", "string"], "default": None},
        {"name": "score", "type": "double"},
    ],
}
SENSITIVE = {"name", "income", "age", "phone", "score"}
FIELDS = sealed_fields(sealed_schema(SCHEMA, SENSITIVE))
VALUES: list[dict[str, Any]] = [
    {"id": "p0", "name": "", "income": 0, "age": -1, "phone": None, "score": 0.5},
    {"id": "p1", "name": "Li Na", "income": 63, "age": 64, "phone": "0571", "score": -2.0},
    {"id": "p2", "name": "x" * 63, "income": 8191, "age": 8192, "phone": "", "score": 1e300},
    {"id": "p3", "name": "é" * 40, "income": 2**20, "age": -(2**20) - 1, "score": 3.0},
    {"id": "p4", "name": "漢" * 500, "income": -(2**63), "age": 2**31 - 1, "score": 0.0},
    {"id": "p5", "income": 2**63 - 1, "age": -(2**31)},  # absent fields stay absent
]


@pytest.fixture(scope="module")
def crypto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FieldCrypto]:
    """One key store for the module: the tests seal and open, none shreds or rotates."""
    with memory_field_crypto(tmp_path_factory.mktemp("seal-flat")) as crypto:
        yield crypto


def _seal(crypto: FieldCrypto, record: Any, *, walk: bool, key: bytes | None = b"k") -> Any:
    if walk:
        crypto._flats[(id(FIELDS), TOPIC, 7)] = (FIELDS, None)  # force the general walk
    else:
        crypto._flats.clear()
        assert crypto._flat(FIELDS, TOPIC, 7) is not None  # the flat path is taken
    try:
        return crypto.seal(
            topic=TOPIC, owner="health", sealed_schema_id=7, key=key, record=record, fields=FIELDS
        )
    finally:
        crypto._flats.clear()


def _open_walk(crypto: FieldCrypto, sealed: dict[str, Any], key: bytes | None) -> Any:
    crypto._flats[(id(FIELDS), TOPIC, 7)] = (FIELDS, None)
    try:
        return crypto.open(
            topic=TOPIC,
            sealed_schema_id=7,
            key=key,
            record=sealed,
            fields=FIELDS,
            granted=set(FIELDS),
        )
    finally:
        crypto._flats.clear()


@pytest.mark.parametrize("key", [b"k", None])
@pytest.mark.parametrize("record", VALUES)
def test_the_flat_seal_seals_what_the_walk_seals(
    crypto: FieldCrypto, record: dict[str, Any], key: bytes | None
) -> None:
    flat, walk = (
        _seal(crypto, record, walk=False, key=key),
        _seal(crypto, record, walk=True, key=key),
    )
    assert flat.keys() == walk.keys() == record.keys()
    for name in record:
        if name not in SENSITIVE:
            assert flat[name] is record[name]
            continue
        end = 19 + flat[name][2]
        assert flat[name][: end - 12] == walk[name][: end - 12]  # the same DEK version
        assert len(flat[name]) == len(walk[name])  # the same encoding's length
        assert flat[name] != walk[name]  # a fresh nonce each
    for sealed in (flat, walk):  # each opens, under the same bound context, to the value
        opened = _open_walk(crypto, sealed, key)
        assert opened.redacted == {} and opened.value == record


@pytest.mark.parametrize(
    "bad",
    [
        {"income": "12"},
        {"income": 2**63},
        {"age": 2**31},
        {"age": 1.5},
        {"name": 5},
        {"name": b"x"},
        {"phone": 7},
        {"score": "x"},
    ],
)
def test_a_value_that_does_not_fit_its_type_fares_alike(
    crypto: FieldCrypto, bad: dict[str, Any]
) -> None:
    """Refused with the same error, or (what fastavro lets through: publish validates before
    sealing) sealed to the same value."""
    record = {**VALUES[1], **bad}
    outcomes = []
    for walk in (False, True):
        try:
            outcomes.append(_open_walk(crypto, _seal(crypto, record, walk=walk), b"k").value)
        except Exception as exc:
            outcomes.append(type(exc))
    assert outcomes[0] == outcomes[1]
    if bad.get("income") == "12" or "name" in bad:
        assert outcomes[0] is InvalidInput


def test_what_is_not_a_record_is_left_alone(crypto: FieldCrypto) -> None:
    for walk in (False, True):
        assert _seal(crypto, "x", walk=walk) == "x"
        record = {"id": "p9"}
        assert _seal(crypto, record, walk=walk) is record


def test_seals_count_against_the_key_use_policy_alike(crypto: FieldCrypto) -> None:
    """Each sealed value takes one use of its DEK on either path, so rotation by use count
    comes at the same seal."""
    seen = set()
    for i in range(4):
        sealed = _seal(crypto, VALUES[1], walk=bool(i % 2))
        seen.add(sealed["name"][: 19 + sealed["name"][2] - 12])
    assert len(seen) == 1
    keys = crypto.keys
    assert keys.current(TOPIC, "name", "health", "AES256_GCM").prefix in seen
