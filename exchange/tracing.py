"""OpenTelemetry tracing of publish and delivery, off unless an OTLP endpoint is configured.

Off (the default) :func:`span` returns one shared no-op context manager: nothing of
OpenTelemetry is imported and a span costs a function call. On
(``EXCHANGE_OTLP_ENDPOINT``, e.g. ``http://collector:4318/v1/traces``; needs the ``otel``
extra) spans go to that collector in batches: ``HTTP <method> <route>`` for the request, then
``publish.validate``, ``publish.seal``, ``publish.kafka`` (the Kafka transaction),
``publish.audit`` (the audit append inside it), and ``delivery.read`` / ``delivery.render``.
Span attributes are bounded and never hold values: topic, record count, route.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

_tracer: Any = None  # an opentelemetry Tracer once configured
_OFF: AbstractContextManager[None] = contextlib.nullcontext()


def enabled() -> bool:
    return _tracer is not None


def configure(endpoint: str, service_name: str = "exchange-gateway") -> None:
    """Export spans over OTLP/HTTP to ``endpoint`` (imports the SDK only now)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    use(provider)


def use(provider: Any) -> None:
    """Trace through ``provider`` (an SDK TracerProvider; tests pass one with an in-memory
    exporter); None turns tracing off again."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("exchange")


def span(name: str, **attributes: str | int) -> AbstractContextManager[Any]:
    if _tracer is None:
        return _OFF
    return _spanned(name, attributes)


@contextlib.contextmanager
def _spanned(name: str, attributes: dict[str, str | int]) -> Iterator[Any]:
    with _tracer.start_as_current_span(name, attributes=attributes) as s:
        yield s
