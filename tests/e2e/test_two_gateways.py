"""Two gateway instances over one control plane serve the same subscription."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import build, grant, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def test_cursor_committed_on_one_instance_is_honoured_by_the_other(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    shared = {
        "database_url": f"sqlite:///{tmp_path / 'shared.db'}",
        "master_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "public_url": "http://exchange.test",
    }  # one issuer behind a load balancer
    # One home: the local keystore (KEKs) is shared as a volume would be in production.
    a = ThreadGateway(tmp_path / "home", kafka_bootstrap, **shared).start()
    b = ThreadGateway(tmp_path / "home", kafka_bootstrap, **shared).start()
    try:
        with a.admin() as admin:
            s = build(admin, a.url)
        s.publisher.publish(s.topic, [{"key": f"k{i}", "value": person(i)} for i in range(8)])
        grant(s, ["name"])
        sub = s.subscriber.subscribe(s.topic)
        on_b = ExchangeClient(b.url, s.subscriber.client_id, s.subscriber._secret)

        first: list[dict[str, object]] = []
        for _ in range(10):  # a page holds what has arrived (maybe one partition's so far)
            page = s.subscriber.poll(sub, max=4 - len(first), wait_ms=3000)  # instance A
            first += page["records"]
            if page["records"]:
                on_b.commit(sub, page["cursor"])  # committed through instance B
            if len(first) >= 4:
                break
        assert len(first) == 4
        rest: list[dict[str, object]] = []
        for _ in range(10):
            page = on_b.poll(sub, wait_ms=1000)
            rest += page["records"]
            if page["records"]:
                s.subscriber.commit(sub, page["cursor"])  # and back through A
            if len(rest) >= 4:
                break
        ids_a = {r["record_id"] for r in first}
        ids_b = {r["record_id"] for r in rest}
        assert ids_a.isdisjoint(ids_b)
        assert len(ids_a | ids_b) == 8
        on_b.close()
        s.close()
    finally:
        a.stop()
        b.stop()
