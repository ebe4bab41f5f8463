"""Publish and delivery are traced when a tracer is configured: HTTP → validate → seal →
Kafka → audit, and delivery read → render, in one trace per request, with no record value
in any span. The in-memory exporter of the OpenTelemetry SDK stands in for a collector."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exchange import tracing
from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.scenario import build, grant, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

PUBLISH = "POST /v1/topics/{topic}/records"
PULL = "GET /v1/subscriptions/{sub_id}/records"


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert found, (name, sorted({s.name for s in spans}))
    return found[-1]


def test_publish_and_delivery_spans(gateway: ThreadGateway, admin: ExchangeClient) -> None:
    s = build(admin, gateway.url)
    grant(s, ["name"])
    sub = s.subscriber.subscribe(s.topic)
    marker = f"Traced{uuid.uuid4().hex[:8]}"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        s.publisher.publish(s.topic, [{"value": {**person(3), "name": marker}}])
        page = s.subscriber.poll(sub, wait_ms=5000)
        assert [r["value"]["name"] for r in page["records"]] == [marker]
    finally:
        tracing.use(None)
        s.close()
    spans = list(exporter.get_finished_spans())
    http = one(spans, PUBLISH)
    kafka = one(spans, "publish.kafka")
    for name in ("publish.validate", "publish.seal", "publish.kafka", "publish.audit"):
        assert one(spans, name).context.trace_id == http.context.trace_id, name
    assert one(spans, "publish.audit").parent.span_id == kafka.context.span_id  # type: ignore[union-attr]
    assert one(spans, "publish.validate").attributes["topic"] == s.topic  # type: ignore[index]
    pull = [sp for sp in spans if sp.name == PULL]
    assert pull
    render = one(spans, "delivery.render")
    assert render.context.trace_id in {p.context.trace_id for p in pull}
    assert http.attributes["http.response.status_code"] == 200  # type: ignore[index]
    for sp in spans:
        assert marker not in str(dict(sp.attributes or {})) and marker not in sp.name
