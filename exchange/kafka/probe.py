"""Readiness probe: does a Kafka metadata request answer?"""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.errors import KafkaError


def metadata_answers(bootstrap: str, *, timeout: float = 5.0) -> bool:
    ms = int(timeout * 1000)
    # kafka-python logs every refused connection at ERROR while the broker boots.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            client_id="exchange-probe",
        )
    except (KafkaError, OSError, ValueError):  # not up yet, or refused
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
