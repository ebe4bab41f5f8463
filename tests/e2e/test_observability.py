"""Observability of a running `exchange up`: Prometheus /metrics on its own port with
bounded label sets and every family the operators' dashboard reads moving, request ids, JSON
access logs, no secret in any log line, and OpenTelemetry spans exported over OTLP/HTTP to a
collector (a real HTTP listener here, decoding the protobuf export requests) when
``EXCHANGE_OTLP_ENDPOINT`` is set — with no record value in any of them."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from exchange.client import ExchangeClient
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


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(ln.rsplit(" ", 1)[1]) for ln in samples(text, name) if all(w in ln for w in want)
    )


class Collector:
    """An OTLP/HTTP trace receiver on loopback: keeps each export request as received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []  # path, content type, body
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def spans(self) -> list[tuple[str, str]]:
        """(service.name, span name) of every span received so far."""
        out = []
        for _, _, body in list(self.requests):
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    out += [(attrs.get("service.name", ""), sp.name) for sp in ss.spans]
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_metrics_logs_and_request_ids(tmp_path: Path, kafka_bootstrap: str) -> None:
    mport = free_port()
    collector = Collector()
    env = {
        "EXCHANGE_METRICS_PORT": str(mport),
        "EXCHANGE_LOG_FORMAT": "json",
        "EXCHANGE_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # the batch processor's export interval (ms)
    }
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
        assert value(after, "exchange_publish_bytes_total", topic=s.topic) > 0
        assert samples(after, "exchange_audit_queue")  # a gauge: 0 when the writer keeps up
        # The sealed field the subscriber is granted: a data key wrapped, then unwrapped (or
        # served from the cache) to open it.
        assert value(after, "exchange_kms_calls_total", outcome="ok") > 0
        assert value(after, "exchange_kms_call_duration_seconds_count") > 0
        assert value(after, "exchange_kms_cache_lookups_total") > 0
        for lag in ("exchange_delivery_lag_records", "exchange_delivery_lag_seconds"):
            assert any(f'subscription="{sub}"' in ln for ln in samples(after, lag)), lag
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

        # A refused token request is counted by reason; an open SSE stream is counted.
        refused = value(after, "exchange_token_refusals_total")
        r = httpx.post(
            f"{gw.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(s.publisher.client_id, "not-the-secret"),
        )
        assert r.status_code == 401
        assert value(scrape(mport), "exchange_token_refusals_total") == refused + 1
        opened = threading.Event()
        closing = threading.Event()

        def listen() -> None:
            with ExchangeClient(gw.url, s.subscriber.client_id, s.subscriber._secret) as c:
                for _ in c.stream(sub, timeout=30):
                    opened.set()
                    if closing.is_set():
                        return

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        assert opened.wait(30)  # the first record came over the stream
        assert value(scrape(mport), "exchange_streams_open", kind="sse") == 1
        closing.set()
        s.publisher.publish(s.topic, [{"key": "k2", "value": person(8)}])  # wakes the reader
        t.join(30)
        deadline = time.monotonic() + 30
        while value(scrape(mport), "exchange_streams_open", kind="sse") != 0:
            assert time.monotonic() < deadline, "the closed stream is still counted"
            time.sleep(0.2)

        # Traces went to the collector over OTLP/HTTP (protobuf), publish and delivery.
        deadline = time.monotonic() + 30
        want = {"POST /v1/topics/{topic}/records", "publish.kafka", "publish.audit",
                "delivery.render"}  # fmt: skip
        while not want <= {name for _, name in collector.spans()}:
            assert time.monotonic() < deadline, sorted({n for _, n in collector.spans()})
            time.sleep(0.2)
        assert {svc for svc, _ in collector.spans()} == {"exchange-gateway"}
        assert {(p, ct) for p, ct, _ in collector.requests} == {
            ("/v1/traces", "application/x-protobuf")
        }
        # The metrics listener is not the API: nothing of it answers on the API port.
        assert httpx.get(f"{gw.url}/metrics").status_code == 404
        s.close()
    finally:
        gw.stop()
        collector.close()
    assert not any(marker.encode() in body for _, _, body in collector.requests)

    log = (tmp_path / "home" / "gateway.log").read_text()
    lines = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{")]
    access = [x for x in lines if x["logger"] == "exchange.access"]
    assert any(x.get("request_id") == mine and x["route"] == "/readyz" for x in access)
    assert any(x["route"] == "/v1/topics/{topic}/records" and x["status"] == 200 for x in access)
    assert not any(b in log for b in bogus)  # paths are logged as templates
    secret = json.loads((tmp_path / "home" / "admin-credentials.json").read_text())
    for needle in (marker, token, secret["client_secret"], s.publisher._secret):
        assert needle not in log
