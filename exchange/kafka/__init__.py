"""Everything that touches Kafka lives in this package (the only importer of a Kafka client).

:func:`open_kafka` builds the :class:`~exchange.kafka.port.KafkaPort` for a backend: librdkafka
(confluent-kafka, the default: several times faster, see the README) or kafka-python.
"""

from __future__ import annotations

from typing import Literal

from exchange.kafka.port import KafkaPort
from exchange.kafka.security import KafkaSecurity

KafkaClient = Literal["librdkafka", "kafka-python"]
DEFAULT_CLIENT: KafkaClient = "librdkafka"


def open_kafka(
    bootstrap: str,
    client_id: str = "exchange",
    backend: KafkaClient = DEFAULT_CLIENT,
    *,
    replication: int = 1,
    request_timeout_ms: int = 15000,
    security: KafkaSecurity | None = None,
    transactional_prefix: str | None = None,
    transaction_timeout_ms: int = 30000,
) -> KafkaPort:
    """``security``: how to authenticate (SASL/TLS); ``Settings.kafka_security()`` gives it.
    ``transactional_prefix``: the gateway slot's stable transactional ids
    (:mod:`exchange.kafka.transactional`); None for a throw-away client (random ids)."""
    # Imported here so that using the broker tools does not load both client libraries.
    if backend == "librdkafka":
        from exchange.kafka.rdkafka import RdKafkaAdapter

        return RdKafkaAdapter(
            bootstrap,
            client_id=client_id,
            replication=replication,
            request_timeout_ms=request_timeout_ms,
            security=security,
            transactional_prefix=transactional_prefix,
            transaction_timeout_ms=transaction_timeout_ms,
        )
    if backend == "kafka-python":
        from exchange.kafka.client import KafkaAdapter

        return KafkaAdapter(
            bootstrap,
            client_id=client_id,
            replication=replication,
            request_timeout_ms=request_timeout_ms,
            security=security,
            transactional_prefix=transactional_prefix,
            transaction_timeout_ms=transaction_timeout_ms,
        )
    raise ValueError(f"unknown Kafka client {backend!r}")
