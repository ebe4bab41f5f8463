"""Readiness probe (does an authenticated metadata request answer?) and broker set-up calls."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import ScramMechanism, UserScramCredentialUpsertion
from kafka.errors import KafkaError

from exchange.errors import KafkaUnavailable
from exchange.kafka.security import KafkaSecurity


def metadata_answers(
    bootstrap: str, security: KafkaSecurity | None = None, *, timeout: float = 5.0
) -> bool:
    """True if the cluster answers a metadata request made with ``security``'s credentials."""
    ms = int(timeout * 1000)
    # kafka-python logs every refused connection at ERROR while the broker boots.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            client_id="exchange-probe",
            **(security or KafkaSecurity()).kafka_python_config(),
        )
    except (KafkaError, OSError, ValueError):  # not up yet, refused, or not authenticated
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def add_scram_user(bootstrap: str, username: str, password: str) -> None:
    """Create a SCRAM-SHA-512 user on an unauthenticated broker (migrating an old home)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="exchange-migrate")
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailable(f"Kafka at {bootstrap} is unreachable") from exc
    try:
        upsert = UserScramCredentialUpsertion(
            username, ScramMechanism.SCRAM_SHA_512, password, iterations=8192
        )
        errors = admin.alter_user_scram_credentials([upsert])
    except KafkaError as exc:
        raise KafkaUnavailable(f"creating the SCRAM user failed: {exc}") from exc
    finally:
        admin.close()
    if errors.get(username):
        raise KafkaUnavailable(f"creating the SCRAM user failed: {errors[username]}")
