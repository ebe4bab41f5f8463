from pathlib import Path

import pytest

from exchange.settings import Settings


def test_defaults_put_everything_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("EXCHANGE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("EXCHANGE_DATABASE_URL", raising=False)
    monkeypatch.setenv("EXCHANGE_HOME", str(tmp_path))
    s = Settings()
    assert s.kafka_bootstrap is None
    assert s.port == 8080
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path / 'exchange.db'}"


def test_env_prefix_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("EXCHANGE_PORT", "9000")
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", "postgresql+psycopg://x@db/ex")
    s = Settings()
    assert (s.kafka_bootstrap, s.port, s.sqlalchemy_url) == (
        "kafka:9092",
        9000,
        "postgresql+psycopg://x@db/ex",
    )


def test_master_key_is_secret_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_MASTER_KEY", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=")
    assert "c2Vj" not in repr(Settings())


def test_kafka_client_defaults_to_librdkafka_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from exchange.kafka import open_kafka
    from exchange.kafka.client import KafkaAdapter
    from exchange.kafka.rdkafka import RdKafkaAdapter

    monkeypatch.delenv("EXCHANGE_KAFKA_CLIENT", raising=False)
    assert Settings().kafka_client == "librdkafka"
    assert isinstance(open_kafka("127.0.0.1:1"), RdKafkaAdapter)  # nothing connects yet
    monkeypatch.setenv("EXCHANGE_KAFKA_CLIENT", "kafka-python")
    chosen = Settings().kafka_client
    assert isinstance(open_kafka("127.0.0.1:1", "t", chosen), KafkaAdapter)
    monkeypatch.setenv("EXCHANGE_KAFKA_CLIENT", "java")
    with pytest.raises(ValidationError):
        Settings()
