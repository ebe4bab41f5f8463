import fastavro
import pytest

from exchange import wire
from exchange.errors import InvalidInput

SCHEMA = fastavro.parse_schema(
    {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
)


def test_frame_roundtrip_keeps_schema_id_and_body() -> None:
    data = wire.encode(1234, SCHEMA, {"a": "x"})
    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == 1234
    schema_id, body = wire.unframe(data)
    assert schema_id == 1234
    assert wire.decode_body(SCHEMA, body) == {"a": "x"}


@pytest.mark.parametrize("bad", [b"", b"\x00\x00", b"\x01\x00\x00\x00\x01abc"])
def test_unframe_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(InvalidInput):
        wire.unframe(bad)
