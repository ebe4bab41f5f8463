"""A remote site opens sealed fields with only the keys the owner released (``_Keys``): on
the opener's flat path too (every sealed field top-level, the usual schema), which looks keys
up by envelope prefix first. The chain test found a 500 there: ``_Keys`` had no ``ready`` (a
cast to KeyManager hid it from mypy; the opener now takes the ``OpenKeys`` protocol)."""

from __future__ import annotations

from dataplane.federation import _Keys
from exchange.crypto import FieldCrypto
from exchange.crypto.fields import FieldOpener, OpenKeys
from exchange.crypto.keys import Dek, KeyManager
from tests.unit.crypto.test_open_flat import FIELDS, TOPIC, crypto, person, seal

__all__ = ["crypto"]  # the fixture, used by name


def _released(crypto: FieldCrypto, record: dict[str, object], names: set[str]) -> _Keys:
    keys: dict[tuple[str, int], Dek] = {}
    for name in names:
        raw = record[name]
        assert isinstance(raw, bytes)
        dek = crypto._dek_of(raw)
        keys[(dek.dek_id, dek.version)] = dek
    return _Keys(keys)


def _open(keys: _Keys, record: dict[str, object], granted: set[str]) -> dict[str, object]:
    opener = FieldOpener(keys)  # what dataplane.federation opens with
    opened = opener.open(
        topic=TOPIC, sealed_schema_id=7, key=b"k", record=record, fields=FIELDS, granted=granted
    )
    return {"value": opened.value, "redacted": opened.redacted}


def test_released_keys_open_top_level_sealed_fields(crypto: FieldCrypto) -> None:
    record = seal(crypto, 4)
    got = _open(_released(crypto, record, {"name", "income"}), record, {"id", "name", "income"})
    assert got == {
        "value": {"id": "p4", "name": "Resident 4", "income": 4 * 10**12},
        "redacted": {},
    }


def test_a_key_not_released_redacts_its_field_only(crypto: FieldCrypto) -> None:
    record = seal(crypto, 2)
    got = _open(_released(crypto, record, {"name"}), record, {"id", "name", "score"})
    assert got["value"] == {"id": "p2", "name": person(2)["name"], "score": None}
    assert got["redacted"] == {"score": "shredded"}


def test_keys_is_a_key_source_for_opening() -> None:
    # Both key sources offer what the opener reads (mypy checks the same statically).
    for source in (_Keys, KeyManager):
        source_keys: type[OpenKeys] = source
        for name in ("get", "ready_table"):
            assert callable(getattr(source_keys, name, None)), (source, name)
