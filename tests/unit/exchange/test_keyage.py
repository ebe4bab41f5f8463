"""Key and certificate expiry gauges (what deploy/prometheus/alerts.yml warns on), read from a
real SQLite control plane and real PEM files made with `cryptography`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY

from exchange.crypto.models import DekFamilyRow, DekVersionRow
from exchange.db import make_engine, migrate, session_factory, transaction
from exchange.identity.models import SigningKeyRow
from exchange.keyage import KeyAgeReporter, certificate_expiry

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def cert_pem(not_after: datetime, name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def gauge(name: str, label: str, value: str) -> float | None:
    return REGISTRY.get_sample_value(name, {label: value})


def test_certificate_expiry_is_the_earliest_in_a_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(
        cert_pem(NOW + timedelta(days=400), "root") + cert_pem(NOW + timedelta(days=9), "sub")
    )
    assert certificate_expiry(bundle, NOW) == pytest.approx(9 * 86400)
    expired = tmp_path / "old.pem"
    expired.write_bytes(cert_pem(NOW - timedelta(hours=1), "old"))
    assert certificate_expiry(expired, NOW) == pytest.approx(-3600)
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ValueError):
        certificate_expiry(empty, NOW)


def test_reporter_exports_key_and_certificate_expiry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'exchange.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        s.add(
            SigningKeyRow(
                kid="k1",
                alg="EdDSA",
                sealed_private=b"x",
                public_jwk={},
                created_at=NOW - timedelta(days=200),
                status="active",
            )
        )
        s.add(DekFamilyRow(dek_id="d1", topic="t", field="f", owner="o", created_at=NOW))
        s.add(
            DekVersionRow(
                dek_id="d1",
                version=1,
                cipher="AES-256-GCM",
                kek_alias="a",
                kek_version=1,
                state="active",
                created_at=NOW - timedelta(days=85),
            )
        )
    client = tmp_path / "client.pem"
    client.write_bytes(cert_pem(NOW + timedelta(days=20), "gateway"))
    reporter = KeyAgeReporter(
        sessions,
        timedelta(days=90),
        certificates={"kafka_client": client, "kafka_ca": tmp_path / "missing.pem"},
        clock=lambda: NOW,
    )
    with caplog.at_level(logging.WARNING, logger="exchange.keyage"):
        reporter.refresh()
        reporter.refresh()
    assert gauge("exchange_certificate_expiry_seconds", "use", "kafka_client") == pytest.approx(
        20 * 86400
    )
    assert gauge("exchange_certificate_expiry_seconds", "use", "kafka_ca") is None
    said = [r.getMessage() for r in caplog.records if "kafka_ca" in r.getMessage()]
    assert len(said) == 1 and "missing.pem" in said[0]  # once, not every refresh
    assert gauge("exchange_key_age_seconds", "kind", "token_signing") == 200 * 86400
    assert gauge("exchange_key_expiry_seconds", "kind", "data_encryption") == 5 * 86400
    # A renewed certificate shows at the next refresh.
    client.write_bytes(cert_pem(NOW + timedelta(days=90), "gateway"))
    reporter.refresh()
    assert gauge("exchange_certificate_expiry_seconds", "use", "kafka_client") == pytest.approx(
        90 * 86400
    )
    engine.dispose()
