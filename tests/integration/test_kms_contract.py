"""One contract every KMS provider must pass: memory, local keystore, PKCS#11 (SoftHSM2).

Each provider fixture yields ``(kms, broken)`` where ``broken`` is the same provider unable
to answer (outage, wrong master key, wrong PIN) — it must raise KmsUnavailable, never
return wrong keys.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.crypto.errors import KekNotFound, KmsUnavailable
from exchange.crypto.kms import KekRef, Kms
from exchange.crypto.kms_local import LocalKms
from exchange.crypto.kms_memory import MemoryKms
from exchange.crypto.kms_pkcs11 import Pkcs11Kms
from exchange.crypto.kms_wrappers import CachingKms, MeteredKms

SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
)
PIN = "4321"


def _softhsm_module() -> str | None:
    return next((m for m in SOFTHSM_MODULES if os.path.exists(m)), None)


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A throwaway SoftHSM2 token: (module path, token label)."""
    module = _softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (make system-deps)")
    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\n")
    # SoftHSM reads its config when the library is first initialised in this process.
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    label = f"exchange-test-{secrets.token_hex(3)}"
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            "1234",
            "--pin",
            PIN,
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    yield module, label
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


class _Down:
    """A provider whose every call fails like an unreachable KMS."""

    def ping(self) -> bool:
        return False

    def __getattr__(self, name: str) -> object:
        def fail(*_a: object, **_k: object) -> object:
            raise KmsUnavailable("down")

        return fail


@pytest.fixture(params=["memory", "local", "pkcs11", "cached+metered"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Kms, Kms]]:
    if request.param == "memory":
        kms = MemoryKms()
        broken = MemoryKms()
        broken.available = False
        yield kms, broken
    elif request.param == "local":
        path = tmp_path / "kms" / "keystore.bin"
        kms_local = LocalKms(path, secrets.token_bytes(32))
        kms_local.init()
        yield kms_local, LocalKms(path, secrets.token_bytes(32))  # wrong master key
    elif request.param == "pkcs11":
        module, label = request.getfixturevalue("softhsm_token")
        p11 = Pkcs11Kms(module, label, PIN)
        yield p11, Pkcs11Kms(module, label, "0000")  # wrong PIN
        p11.close()
    else:
        yield CachingKms(MeteredKms(MemoryKms())), CachingKms(MeteredKms(_Down()))  # type: ignore[arg-type]


def _alias() -> str:
    return f"dept-{secrets.token_hex(4)}"


def test_wrap_unwrap_roundtrip(provider: tuple[Kms, Kms]) -> None:
    kms, _ = provider
    kek = kms.create_kek(_alias())
    assert kek.version == 1
    dek = secrets.token_bytes(32)
    wrapped = kms.wrap(kek, dek)
    assert dek not in wrapped and len(wrapped) >= len(dek) + 16
    assert kms.unwrap(kek, wrapped) == dek
    assert kms.wrap(kek, dek) != wrapped  # fresh nonce each time


def test_versions_and_current(provider: tuple[Kms, Kms]) -> None:
    kms, _ = provider
    alias = _alias()
    with pytest.raises(KekNotFound):
        kms.current_kek(alias)
    v1 = kms.create_kek(alias)
    w1 = kms.wrap(v1, b"k" * 16)
    v2 = kms.create_kek(alias)
    assert (v1, v2) == (KekRef(alias, 1), KekRef(alias, 2))
    assert kms.current_kek(alias) == v2
    assert kms.unwrap(v1, w1) == b"k" * 16  # old versions still unwrap (until re-wrapped)


def test_wrapped_key_is_bound_to_its_kek(provider: tuple[Kms, Kms]) -> None:
    kms, _ = provider
    a, b = kms.create_kek(_alias()), kms.create_kek(_alias())
    wrapped = kms.wrap(a, secrets.token_bytes(32))
    with pytest.raises(KmsUnavailable):
        kms.unwrap(b, wrapped)
    with pytest.raises(KmsUnavailable):
        kms.unwrap(a, wrapped[:-1] + bytes([wrapped[-1] ^ 1]))


def test_unknown_kek(provider: tuple[Kms, Kms]) -> None:
    kms, _ = provider
    kek = kms.create_kek(_alias())
    with pytest.raises(KekNotFound):
        kms.wrap(KekRef(kek.alias, 9), b"x" * 32)
    with pytest.raises(KekNotFound):
        kms.unwrap(KekRef(_alias(), 1), b"\x01" + b"x" * 60)


def test_unavailable_fails_closed(provider: tuple[Kms, Kms]) -> None:
    kms, broken = provider
    kek = kms.create_kek(_alias())
    wrapped = kms.wrap(kek, secrets.token_bytes(32))
    assert kms.ping() is True
    assert broken.ping() is False
    with pytest.raises(KmsUnavailable):
        broken.unwrap(kek, wrapped)
    with pytest.raises(KmsUnavailable):
        broken.wrap(kek, b"x" * 32)
    with pytest.raises(KmsUnavailable):
        broken.create_kek(_alias())


def test_local_keystore_file_is_private_and_sealed(tmp_path: Path) -> None:
    path = tmp_path / "kms" / "keystore.bin"
    master = secrets.token_bytes(32)
    kms = LocalKms(path, master)
    assert kms.init() is True and kms.init() is False
    kek = kms.create_kek("civil-affairs")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert b"civil-affairs" not in path.read_bytes()  # alias names are sealed too
    # A second instance (another process: CLI, replica) sees the new KEK.
    other = LocalKms(path, master)
    wrapped = other.wrap(other.current_kek("civil-affairs"), b"d" * 32)
    assert kms.unwrap(kek, wrapped) == b"d" * 32


def test_local_keystore_missing_is_unavailable_not_empty(tmp_path: Path) -> None:
    path = tmp_path / "kms" / "keystore.bin"
    kms = LocalKms(path, secrets.token_bytes(32))
    with pytest.raises(KmsUnavailable, match="kms init"):
        kms.create_kek("a")  # no silent new keystore
    kms.init()
    kek = kms.create_kek("a")
    path.rename(path.with_suffix(".moved"))
    with pytest.raises(KmsUnavailable):
        kms.current_kek("a")
    with pytest.raises(KmsUnavailable):
        kms.wrap(kek, b"x" * 32)
    assert kms.ping() is False


def test_cache_is_bounded_with_ttl_and_metrics_count_real_calls() -> None:
    metered = MeteredKms(MemoryKms())
    cached = CachingKms(metered, max_entries=2, ttl_seconds=300)
    kek = cached.create_kek("a")
    wrapped = [cached.wrap(kek, secrets.token_bytes(32)) for _ in range(3)]
    for w in wrapped:
        cached.unwrap(kek, w)
        cached.unwrap(kek, w)
    assert len(cached) == 2
    snap = metered.metrics.snapshot()
    assert snap["unwrap"]["calls"] == 3 and snap["wrap"]["calls"] == 3
    assert "key" not in repr(snap).lower()
    cached.forget(kek, wrapped[-1])
    assert len(cached) == 1
    expiring = CachingKms(MemoryKms(), ttl_seconds=0)
    k2 = expiring.create_kek("b")
    expiring.unwrap(k2, expiring.wrap(k2, b"x" * 32))
    assert len(expiring) == 0


def test_field_crypto_over_pkcs11_from_settings(
    softhsm_token: tuple[str, str], tmp_path: Path
) -> None:
    """``kms_provider=pkcs11`` end to end: seal, rotate the KEK inside the HSM, open."""
    from exchange.auditing import MemoryAuditSink
    from exchange.crypto import build_field_crypto
    from exchange.db import make_engine, migrate, session_factory
    from exchange.settings import Settings

    module, label = softhsm_token
    settings = Settings(
        home=tmp_path,
        kms_provider="pkcs11",
        pkcs11_module=module,
        pkcs11_token_label=label,
        pkcs11_pin=PIN,  # type: ignore[arg-type]
    )
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    crypto = build_field_crypto(
        settings, session_factory(engine), MemoryAuditSink(), secrets.token_bytes(32)
    )
    dept = _alias()
    args = {"topic": f"{dept}.t", "sealed_schema_id": 1, "key": b"k", "fields": {"ssn": "string"}}
    sealed = crypto.seal(owner=dept, cipher="SM4_GCM", record={"ssn": "S-1"}, **args)
    assert crypto.keys.rotate_kek(dept) == 1
    crypto.clear_cache()
    assert crypto.open(record=sealed, granted={"ssn"}, **args).value == {"ssn": "S-1"}
    assert crypto.metrics.snapshot()["unwrap"]["calls"] >= 2
    crypto.close()
    engine.dispose()
