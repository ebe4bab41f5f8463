"""External-cluster settings map to kafka-python, librdkafka and Java client configs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from exchange.errors import ConfigurationError
from exchange.home import loose_paths, secure_home
from exchange.kafka import security
from exchange.kafka.security import KafkaSecurity, write_properties_file
from exchange.settings import Settings

PASSWORD = 's3cr\\et"pw'  # a backslash and a quote: both need escaping in Java configs


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("EXCHANGE_"):
            monkeypatch.delenv(key)


def test_sasl_ssl_settings_map_to_both_client_libraries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear(monkeypatch)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("EXCHANGE_KAFKA_BOOTSTRAP", "kafka1:9093,kafka2:9093")
    monkeypatch.setenv("EXCHANGE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("EXCHANGE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("EXCHANGE_KAFKA_SASL_USERNAME", "exchange-gw")
    monkeypatch.setenv("EXCHANGE_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("EXCHANGE_KAFKA_SSL_CAFILE", str(ca))
    sec = Settings().kafka_security()

    assert sec.kafka_python_config() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "exchange-gw",
        "sasl_plain_password": PASSWORD,
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca),
    }
    assert sec.librdkafka_config() == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "exchange-gw",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https",
    }
    props = _parse_properties(sec.properties_file_text())
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "SCRAM-SHA-256"
    assert props["ssl.truststore.type"] == "PEM"
    assert props["ssl.truststore.location"] == str(ca)
    assert props["sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="exchange-gw" password="s3cr\\\\et\\"pw";'
    )
    assert PASSWORD not in repr(sec)  # SecretStr: never in a log line or traceback


def test_mutual_tls_without_sasl(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n")
    sec = KafkaSecurity("SSL", ssl_certfile=cert, ssl_keyfile=key, ssl_check_hostname=False)
    assert sec.kafka_python_config() == {
        "security_protocol": "SSL",
        "ssl_check_hostname": False,
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
    }
    assert sec.librdkafka_config() == {
        "security.protocol": "ssl",
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.endpoint.identification.algorithm": "none",
    }
    props = _parse_properties(sec.properties_file_text())
    assert props["ssl.keystore.type"] == "PEM"
    assert props["ssl.keystore.key"].splitlines()[1] == "BBB"  # newlines survive escaping
    assert props["ssl.endpoint.identification.algorithm"] == ""
    assert "sasl.mechanism" not in props


def test_plaintext_is_the_default_and_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("EXCHANGE_KAFKA_BOOTSTRAP", "kafka:9092")
    sec = Settings().kafka_security()
    assert sec == KafkaSecurity()
    assert sec.kafka_python_config() == {"security_protocol": "PLAINTEXT"}
    assert sec.librdkafka_config() == {"security.protocol": "plaintext"}


def test_sasl_without_credentials_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("EXCHANGE_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("EXCHANGE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("EXCHANGE_KAFKA_SASL_USERNAME", "exchange")
    with pytest.raises(ConfigurationError, match="needs a SASL username and password"):
        Settings().kafka_security()


def test_unknown_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("EXCHANGE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAIN")
    with pytest.raises(ValueError, match="kafka_security_protocol"):
        Settings()


def test_env_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    """What test and bench harnesses hand a gateway subprocess reads back the same."""
    _clear(monkeypatch)
    sec = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "exchange", SecretStr(PASSWORD))
    for key, value in sec.as_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EXCHANGE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    assert Settings().kafka_security() == sec


def test_embedded_broker_credentials_come_from_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear(monkeypatch)
    s = Settings(home=tmp_path)
    with pytest.raises(ConfigurationError, match="no Kafka credentials"):
        s.kafka_security()
    creds = tmp_path / "kafka" / "credentials.json"
    creds.parent.mkdir()
    creds.write_text(json.dumps({"username": "exchange", "password": "p" * 48}))
    sec = s.kafka_security()
    assert (sec.protocol, sec.sasl_mechanism, sec.username) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        "exchange",
    )
    path = write_properties_file(tmp_path, sec)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path == tmp_path / security.PROPERTIES_FILE


def test_secure_home_closes_up_an_old_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "kafka" / "data").mkdir(parents=True)
    os.chmod(home, 0o755)  # noqa: S103 - the old, too open home under test
    old = home / "exchange.db"
    old.write_text("x")
    os.chmod(old, 0o644)
    os.chmod(home / "kafka", 0o775)  # noqa: S103
    previous = os.umask(0o022)
    try:
        assert len(loose_paths(home)) >= 3
        secure_home(home)
        assert loose_paths(home) == []
        assert stat.S_IMODE(old.stat().st_mode) == 0o600
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        fresh = home / "exchange.db-wal"  # as SQLite creates it later, with default modes
        fresh.write_text("y")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    finally:
        os.umask(previous)


def _parse_properties(text: str) -> dict[str, str]:
    """Enough of java.util.Properties: key=value lines, backslash escapes."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, raw = line.partition("=")
        value, i = "", 0
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                nxt = raw[i + 1]
                value += {"n": "\n", "t": "\t"}.get(nxt, nxt)
                i += 2
            else:
                value += ch
                i += 1
        out[key] = value
    return out
