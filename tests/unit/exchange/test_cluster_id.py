"""Cluster ids handed to Kafka's storage tool on its command line."""

from __future__ import annotations

import base64
import uuid

import pytest

from exchange.kafka import broker


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8.. encodes to "-..." in URL-safe base64: the storage tool took such an id for an
    # option and refused to format (seen once in CI). The first draw is forced to be one.
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    draws = iter([dashed, uuid.UUID(int=1)])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    cid = broker.new_cluster_id()
    assert not cid.startswith("-")
    assert len(cid) == 22
    assert base64.urlsafe_b64decode(cid + "==") == uuid.UUID(int=1).bytes
