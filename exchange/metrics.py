"""The exchange's Prometheus metrics: one definition each, in the process's registry.

Served by :func:`serve` on a listener of its own (``EXCHANGE_METRICS_PORT``), not on the API
port: scrapers need no OAuth client, and the API port's access matrix stays as it is; bind it
to an internal interface. Labels are bounded by construction: HTTP routes by their template
(never the raw path), topics and subscriptions only once they exist in the catalog,
outcomes and reasons from fixed sets. Nothing per record, per subject or per client.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "exchange_http_requests", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "exchange_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route"],
    buckets=_LATENCY,
)
PUBLISH_RECORDS = Counter(
    "exchange_publish_records", "Records published (committed) per topic", ["topic"]
)
PUBLISH_BYTES = Counter(
    "exchange_publish_bytes", "Bytes published (encoded values) per topic", ["topic"]
)
PUBLISH_FAILURES = Counter(
    "exchange_publish_failures", "Publish batches refused or failed", ["reason"]
)
DELIVERED_RECORDS = Counter(
    "exchange_delivery_records", "Records delivered per subscription", ["subscription"]
)
DELIVERY_LAG_RECORDS = Gauge(
    "exchange_delivery_lag_records",
    "Records behind the topic's end, per subscription, at its last delivery",
    ["subscription"],
)
DELIVERY_LAG_SECONDS = Gauge(
    "exchange_delivery_lag_seconds",
    "Age of the last record delivered, per subscription",
    ["subscription"],
)
STREAMS_OPEN = Gauge("exchange_streams_open", "Open delivery connections", ["kind"])
WEBHOOK_RETRIES = Counter("exchange_webhook_retries", "Webhook deliveries retried")
WEBHOOK_DEAD_LETTERS = Counter(
    "exchange_webhook_dead_letters", "Webhook deliveries given up (dead-lettered)"
)
TOKENS_ISSUED = Counter("exchange_tokens_issued", "Access tokens issued")
TOKEN_REFUSALS = Counter("exchange_token_refusals", "Token requests or tokens refused", ["reason"])
KMS_CALLS = Counter("exchange_kms_calls", "KMS calls", ["op", "outcome"])
KMS_SECONDS = Histogram(
    "exchange_kms_call_duration_seconds", "KMS call latency", ["op"], buckets=_LATENCY
)
KMS_CACHE = Counter("exchange_kms_cache_lookups", "Unwrapped-DEK cache lookups", ["result"])
AUDIT_APPEND_SECONDS = Histogram(
    "exchange_audit_append_duration_seconds",
    "Audit batch append latency (database and Kafka)",
    buckets=_LATENCY,
)
AUDIT_APPEND_FAILURES = Counter("exchange_audit_append_failures", "Audit appends that failed")
AUDIT_QUEUE = Gauge("exchange_audit_queue", "Audit events waiting for the writer")
KAFKA_ERRORS = Counter("exchange_kafka_errors", "Kafka client errors", ["client"])
DEPENDENCY_UP = Gauge("exchange_dependency_up", "1 if a dependency answers", ["dependency"])
KEY_AGE_SECONDS = Gauge(
    "exchange_key_age_seconds", "Age of the newest key in use, by kind", ["kind"]
)
KEY_EXPIRY_SECONDS = Gauge(
    "exchange_key_expiry_seconds",
    "Seconds until the key in use is due for rotation (negative: overdue), by kind",
    ["kind"],
)
CERT_EXPIRY_SECONDS = Gauge(
    "exchange_certificate_expiry_seconds",
    "Seconds until the earliest certificate of a configured PEM file expires (negative: "
    "expired), by use",
    ["use"],
)
WITNESS_AGE_SECONDS = Gauge(
    "exchange_witness_cosignature_age_seconds",
    "Seconds since the site last cosigned our audit checkpoint (+Inf: never), per known site",
    ["site"],
)

ROUTE_UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Start the ``/metrics`` listener (a daemon thread) for the process's registry."""
    start_http_server(port, addr=host, registry=REGISTRY)
