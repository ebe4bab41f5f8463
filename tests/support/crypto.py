"""A field-crypto stack on a fresh SQLite key store with the in-memory KMS, for tests that
seal and open without a gateway (the unit tests of the flat paths, the depth tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exchange.auditing import MemoryAuditSink
from exchange.crypto import FieldCrypto, build_field_crypto
from exchange.crypto.kms_memory import MemoryKms
from exchange.db import make_engine, migrate, session_factory
from exchange.settings import Settings


@contextmanager
def memory_field_crypto(home: Path, master: bytes = b"k" * 32) -> Iterator[FieldCrypto]:
    """FieldCrypto over ``home``/cp.db (migrated) and MemoryKms; the engine closes after."""
    engine = make_engine(f"sqlite:///{home / 'cp.db'}")
    migrate(engine)
    try:
        yield build_field_crypto(
            Settings(home=home), session_factory(engine), MemoryAuditSink(), master, kms=MemoryKms()
        )
    finally:
        engine.dispose()
