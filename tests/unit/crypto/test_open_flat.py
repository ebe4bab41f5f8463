"""``FieldCrypto.open`` takes a one-loop path when every sealed field is a top-level field
(what delivery opens for most schemas). It must answer exactly what the general walk answers:
granted fields only, shredded keys, tampered or moved envelopes, wrong record keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.crypto import FieldCrypto, sealed_fields, sealed_schema
from exchange.crypto.fields import INTEGRITY, SHREDDED, OpenedRecord
from tests.support.crypto import memory_field_crypto

TOPIC = "health.people"
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Person",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "income", "type": "long"},
        {"name": "phone", "type": ["null", "string"], "default": None},
        {"name": "score", "type": "double"},
    ],
}
SENSITIVE = {"name", "income", "phone", "score"}
FIELDS = sealed_fields(sealed_schema(SCHEMA, SENSITIVE))


@pytest.fixture
def crypto(tmp_path: Path) -> Iterator[FieldCrypto]:
    with memory_field_crypto(tmp_path) as crypto:
        yield crypto


def person(i: int) -> dict[str, Any]:
    phone = None if i % 2 else f"0571-{i:04d}"
    name = f"Resident {i}" + "x" * (70 * (i % 3 == 2))  # some names need a 2-byte length
    return {"id": f"p{i}", "name": name, "income": 10**12 * i, "phone": phone, "score": i / 3}


def seal(crypto: FieldCrypto, i: int, key: bytes | None = b"k") -> dict[str, Any]:
    return crypto.seal(
        topic=TOPIC, owner="health", sealed_schema_id=7, key=key, record=person(i), fields=FIELDS
    )


def both(
    crypto: FieldCrypto,
    record: dict[str, Any],
    granted: set[str],
    *,
    key: bytes | None = b"k",
    topic: str = TOPIC,
    schema_id: int = 7,
) -> OpenedRecord:
    """Open with the flat path and with the general walk; they must agree."""

    def open_() -> OpenedRecord:
        return crypto.open(
            topic=topic,
            sealed_schema_id=schema_id,
            key=key,
            record=record,
            fields=FIELDS,
            granted=granted,
        )

    assert crypto._flat(FIELDS, topic, schema_id) is not None  # the flat path is taken
    flat = open_()
    crypto._flats[(id(FIELDS), topic, schema_id)] = (FIELDS, None)  # force the general walk
    try:
        general = open_()
    finally:
        crypto._flats.clear()
    assert flat == general
    return flat


def test_granted_fields_are_opened_and_the_others_left_out(crypto: FieldCrypto) -> None:
    for i in range(6):
        assert both(crypto, seal(crypto, i), SENSITIVE).value == person(i)
        opened = both(crypto, seal(crypto, i), {"name", "id"})
        assert opened.value == {"id": f"p{i}", "name": person(i)["name"]}
        assert opened.redacted == {}


def test_a_missing_record_key_is_bound_too(crypto: FieldCrypto) -> None:
    sealed = seal(crypto, 1, key=None)
    assert both(crypto, sealed, SENSITIVE, key=None).value == person(1)
    assert both(crypto, sealed, SENSITIVE, key=b"").value == person(1)  # same AAD as None
    moved = both(crypto, sealed, SENSITIVE, key=b"other")
    assert moved.redacted == dict.fromkeys(SENSITIVE, INTEGRITY)
    assert all(moved.value[f] is None for f in SENSITIVE)


def test_an_envelope_from_another_topic_schema_or_field_does_not_open(
    crypto: FieldCrypto,
) -> None:
    sealed = seal(crypto, 0)
    assert both(crypto, sealed, {"name"}, schema_id=8).redacted == {"name": INTEGRITY}
    assert both(crypto, sealed, {"name"}, topic="other.t").redacted == {"name": INTEGRITY}
    swapped = {**sealed, "name": sealed["phone"]}  # same type, another field's key
    opened = both(crypto, swapped, {"name", "phone"})
    assert opened.redacted == {"name": INTEGRITY} and opened.value["name"] is None
    assert opened.value["phone"] == person(0)["phone"]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda env: env[:-1] + bytes([env[-1] ^ 1]),  # tag
        lambda env: env[:3] + bytes([env[3] ^ 1]) + env[4:],  # DEK id
        lambda env: env[:1] + b"\x09" + env[2:],  # unknown cipher
        lambda env: b"\x02" + env[1:],  # unknown format
        lambda env: env[:20],  # truncated
        lambda env: env[:2],
        lambda env: b"",
        lambda env: env[:2] + b"\x00" + env[3:],  # empty DEK id
        lambda env: env[:2] + b"\x41" + env[3:],  # DEK id longer than allowed
        lambda env: "not bytes",
    ],
)
def test_a_spoilt_envelope_reads_as_an_integrity_failure(crypto: FieldCrypto, spoil: Any) -> None:
    sealed = seal(crypto, 0)
    opened = both(crypto, {**sealed, "income": spoil(sealed["income"])}, SENSITIVE)
    assert opened.redacted == {"income": INTEGRITY} and opened.value["income"] is None
    assert opened.value["name"] == person(0)["name"]


def test_a_shredded_key_reads_as_shredded_at_once(crypto: FieldCrypto) -> None:
    sealed = seal(crypto, 0)
    assert both(crypto, sealed, SENSITIVE).value == person(0)  # the key is ready in memory
    crypto.keys.shred(TOPIC, "name")
    opened = both(crypto, sealed, SENSITIVE)
    assert opened.redacted == {"name": SHREDDED} and opened.value["name"] is None
    assert opened.value["income"] == person(0)["income"]


def test_records_without_sealed_fields_are_left_alone(crypto: FieldCrypto) -> None:
    record = {"id": "p1"}
    opened = both(crypto, record, SENSITIVE)
    assert opened.value is record and opened.redacted == {}


def test_rotation_opens_old_and_new_envelopes_alike(crypto: FieldCrypto) -> None:
    old = seal(crypto, 0)
    assert both(crypto, old, SENSITIVE).value == person(0)  # old keys ready and remembered
    crypto.keys.rotate(TOPIC, "name")
    new = seal(crypto, 1)
    assert new["name"][:23] != old["name"][:23]  # another DEK version names it
    assert both(crypto, new, SENSITIVE).value == person(1)
    assert both(crypto, old, SENSITIVE).value == person(0)


def test_a_ready_key_taken_out_of_the_table_is_expired_at_once(crypto: FieldCrypto) -> None:
    """The flat path keeps the ready entries it found: each must die when the key manager
    drops it (shred, rotation, eviction), or a shredded key would still open."""
    sealed = seal(crypto, 0)
    both(crypto, sealed, SENSITIVE)
    table = crypto.keys.ready_table()
    kept = [h for k, h in table.items() if isinstance(k, bytes)]
    assert kept and all(h.expires > 0 for h in kept)
    crypto.keys.clear_cache()  # what eviction and KEK rotation do to every entry
    assert all(h.expires < 0 for h in kept)
    assert both(crypto, sealed, SENSITIVE).value == person(0)  # loaded again on demand
    crypto.keys.shred(TOPIC, "income")
    opened = both(crypto, sealed, SENSITIVE)
    assert opened.redacted == {"income": SHREDDED}
