"""Per-record cost of sealing sensitive fields vs raw AEAD over the same field bytes.

A 10-field record with 3 sensitive fields (string, string, long). ``project`` is
``FieldCrypto.seal`` (Avro-encode each value, DEK lookup from the warm cache, envelope with
AAD, copy of the record) against a real SQLite control plane and the local keystore KMS;
``baseline`` is raw AEAD (a reused cipher object, fresh 12-byte nonce) over the same three
values' bytes, nothing else. Run: ``python -m bench.bench_encryption [--quick]``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from exchange.auditing import MemoryAuditSink
from exchange.crypto import build_field_crypto, sealed_fields, sealed_schema
from exchange.db import make_engine, migrate, session_factory
from exchange.settings import Settings

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Benefit",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ssn", "type": "string"},
        {"name": "income", "type": "long"},
        {"name": "district", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "amount", "type": "double"},
        {"name": "approved", "type": "boolean"},
        {"name": "program", "type": "string"},
        {"name": "updated_ms", "type": "long"},
    ],
}
SENSITIVE = {"name", "ssn", "income"}


def _record(i: int) -> dict[str, Any]:
    return {
        "id": f"b-{i}",
        "name": f"Li Na {i}",
        "ssn": f"11010119900307{i:04d}",
        "income": 120_000 + i,
        "district": "North",
        "age": 40,
        "amount": 1234.5,
        "approved": True,
        "program": "housing",
        "updated_ms": 1_700_000_000_000 + i,
    }


def _time_us(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def _compare(
    project: Callable[[int], object], baseline: Callable[[int], object], n: int
) -> tuple[float, float]:
    """Best-of rounds, alternating the two so that load from other processes hits both."""
    for fn in (project, baseline):
        _time_us(fn, min(n, 200))  # warm caches
    p = b = float("inf")
    for _ in range(7):
        p = min(p, _time_us(project, n // 7))
        b = min(b, _time_us(baseline, n // 7))
    return p, b


def _raw(cipher: str) -> Callable[[int], object]:
    records = [_record(i) for i in range(64)]
    values = [[str(r[f]).encode() for f in sorted(SENSITIVE)] for r in records]
    if cipher == "AES256_GCM":
        aead = AESGCM(secrets.token_bytes(32))

        def aes(i: int) -> object:
            return [aead.encrypt(os.urandom(12), v, None) for v in values[i % 64]]

        return aes
    key = secrets.token_bytes(16)

    def sm4(i: int) -> object:
        out = []
        for v in values[i % 64]:
            enc = Cipher(algorithms.SM4(key), modes.GCM(os.urandom(12))).encryptor()
            out.append(enc.update(v) + enc.finalize() + enc.tag)
        return out

    return sm4


def _open_measure(
    crypto: Any, fields: dict[str, Any], records: list[dict[str, Any]], n: int
) -> dict[str, Any]:
    """Delivery side: open all three sealed fields vs raw AES-GCM decryption of them."""
    sealed = [
        crypto.seal(
            topic="bench.benefits",
            owner="bench",
            sealed_schema_id=1,
            key=r["id"].encode(),
            record=r,
            fields=fields,
        )
        for r in records
    ]
    granted = set(fields)

    def open_(i: int) -> object:
        return crypto.open(
            topic="bench.benefits",
            sealed_schema_id=1,
            key=records[i % 64]["id"].encode(),
            record=sealed[i % 64],
            fields=fields,
            granted=granted,
        )

    aead = AESGCM(secrets.token_bytes(32))
    boxes = [
        [(nonce := os.urandom(12), aead.encrypt(nonce, str(r[f]).encode(), None)) for f in fields]
        for r in records
    ]

    def raw(i: int) -> object:
        return [aead.decrypt(nonce, ct, None) for nonce, ct in boxes[i % 64]]

    project, baseline = _compare(open_, raw, n)
    return {
        "name": "decryption",
        "unit": "x (ratio)",
        "project": round(project, 2),
        "baseline": round(baseline, 2),
        "ratio": round(project / baseline, 2),
        "goal": "<= 3x",
        "note": f"us/record: FieldCrypto.open of 3 granted fields, AES256_GCM, n={n}",
    }


def run(quick: bool) -> list[dict[str, Any]]:
    n = 2_000 if quick else 20_000
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp))
        engine = make_engine(settings.sqlalchemy_url)
        migrate(engine)
        crypto = build_field_crypto(
            settings, session_factory(engine), MemoryAuditSink(), secrets.token_bytes(32)
        )
        fields = sealed_fields(sealed_schema(SCHEMA, SENSITIVE))
        records = [_record(i) for i in range(64)]
        for cipher, name in (("AES256_GCM", "encryption"), ("SM4_GCM", "encryption_sm4")):

            def seal(i: int, cipher: str = cipher) -> object:
                return crypto.seal(
                    topic="bench.benefits",
                    owner="bench",
                    cipher=cipher,
                    sealed_schema_id=1,
                    key=records[i % 64]["id"].encode(),
                    record=records[i % 64],
                    fields=fields,
                )

            project, baseline = _compare(seal, _raw(cipher), n)
            results.append(
                {
                    "name": name,
                    "unit": "x (ratio)",
                    "project": round(project, 2),
                    "baseline": round(baseline, 2),
                    "ratio": round(project / baseline, 2),
                    "goal": "<= 3x",
                    "note": f"us/record, 10 fields, 3 sealed, {cipher}, n={n}",
                }
            )
        results.append(_open_measure(crypto, fields, records, n))
        engine.dispose()
    return results


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
