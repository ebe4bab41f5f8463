"""Observability of a running `exchange up`: Prometheus /metrics on its own port with
bounded label sets, request ids, JSON access logs, and no secret in any log line."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest

from exchange.kafka.broker import free_port
from tests.support.gateway import GatewayProcess
from tests.support.scenario import build, grant, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

BOGUS = 150


def scrape(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def samples(text: str, name: str) -> list[str]:
    return [
        ln for ln in text.splitlines() if ln.startswith(name + "{") or ln.startswith(name + " ")
    ]


def test_metrics_logs_and_request_ids(tmp_path: Path, kafka_bootstrap: str) -> None:
    mport = free_port()
    env = {"EXCHANGE_METRICS_PORT": str(mport), "EXCHANGE_LOG_FORMAT": "json"}
    gw = GatewayProcess(tmp_path / "home", kafka_bootstrap, extra_env=env).start()
    marker = f"Secret{uuid.uuid4().hex[:10]}"
    try:
        with gw.admin() as admin:
            s = build(admin, gw.url)
        grant(s, ["name", "citizen_id"])
        sensitive = {**person(7), "name": f"{marker}-name", "phone": f"{marker}-phone"}
        s.publisher.publish(s.topic, [{"key": "k1", "value": sensitive}])
        sub = s.subscriber.subscribe(s.topic)
        page = s.subscriber.poll(sub, wait_ms=5000)
        assert [r["value"]["name"] for r in page["records"]] == [f"{marker}-name"]
        token = s.publisher.token()

        # Request ids: a sane one is kept, anything else replaced; always returned.
        mine = f"req-{uuid.uuid4().hex[:8]}"
        r = httpx.get(f"{gw.url}/readyz", headers={"X-Request-ID": mine})
        assert r.headers["x-request-id"] == mine
        r = httpx.get(f"{gw.url}/readyz", headers={"X-Request-ID": "bad id<script>" + "x" * 80})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])

        before = scrape(mport)
        # Many distinct bogus paths and topics: no new series per path or topic.
        bogus = [uuid.uuid4().hex for _ in range(BOGUS)]
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}) as c:
            for i, b in enumerate(bogus):
                if i % 2:
                    c.get(f"/v1/nothing-here/{b}")
                else:
                    c.post(f"/v1/topics/{b}/records", json={"records": [{"value": {}}]})
        after = scrape(mport)
        assert not any(b in after for b in bogus)
        grown = len(after.splitlines()) - len(before.splitlines())
        assert grown < 60, grown  # a handful of (route, status) pairs, not one per path

        # What operators watch is there, labelled by route template and topic.
        assert f'exchange_publish_records_total{{topic="{s.topic}"}} 1.0' in after
        assert any(
            'route="/v1/topics/{topic}/records"' in ln and 'method="POST"' in ln
            for ln in samples(after, "exchange_http_requests_total")
        )
        assert any(
            'route="<unmatched>"' in ln for ln in samples(after, "exchange_http_requests_total")
        )
        assert samples(after, "exchange_tokens_issued_total")[0].split()[-1] != "0.0"
        assert any(
            f'subscription="{sub}"' in ln
            for ln in samples(after, "exchange_delivery_records_total")
        )
        assert samples(after, "exchange_audit_append_duration_seconds_count")
        assert any('dependency="kafka"' in ln for ln in samples(after, "exchange_dependency_up"))
        assert any(
            'kind="token_signing"' in ln for ln in samples(after, "exchange_key_age_seconds")
        )
        assert marker not in after
        # The metrics listener is not the API: nothing of it answers on the API port.
        assert httpx.get(f"{gw.url}/metrics").status_code == 404
        s.close()
    finally:
        gw.stop()

    log = (tmp_path / "home" / "gateway.log").read_text()
    lines = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{")]
    access = [x for x in lines if x["logger"] == "exchange.access"]
    assert any(x.get("request_id") == mine and x["route"] == "/readyz" for x in access)
    assert any(x["route"] == "/v1/topics/{topic}/records" and x["status"] == 200 for x in access)
    assert not any(b in log for b in bogus)  # paths are logged as templates
    secret = json.loads((tmp_path / "home" / "admin-credentials.json").read_text())
    for needle in (marker, token, secret["client_secret"], s.publisher._secret):
        assert needle not in log
