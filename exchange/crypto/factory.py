"""Build the field crypto from settings: choose the KMS provider, add the wrappers."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from exchange.auditing import AuditSink
from exchange.crypto.fields import FieldCrypto
from exchange.crypto.keys import KeyManager, RotationPolicy
from exchange.crypto.kms import Kms
from exchange.crypto.kms_local import LocalKms, keystore_path
from exchange.crypto.kms_wrappers import CachingKms, MeteredKms
from exchange.errors import ConfigurationError
from exchange.settings import Settings


def build_kms(settings: Settings, master_key: bytes) -> Kms:
    """The raw provider named by ``settings.kms_provider``."""
    if settings.kms_provider == "local":
        return LocalKms(keystore_path(settings.resolved_home), master_key)
    from exchange.crypto.kms_pkcs11 import Pkcs11Kms

    if not (settings.pkcs11_module and settings.pkcs11_token_label and settings.pkcs11_pin):
        raise ConfigurationError(
            "kms_provider=pkcs11 needs EXCHANGE_PKCS11_MODULE, _TOKEN_LABEL and _PIN"
        )
    return Pkcs11Kms(
        settings.pkcs11_module,
        settings.pkcs11_token_label,
        settings.pkcs11_pin.get_secret_value(),
    )


def build_field_crypto(
    settings: Settings,
    sessions: sessionmaker[Session],
    audit: AuditSink,
    master_key: bytes,
    *,
    kms: Kms | None = None,
    policy: RotationPolicy | None = None,
    dek_ttl_seconds: float = 300,
) -> FieldCrypto:
    """FieldCrypto over ``CachingKms(MeteredKms(provider))``: metrics count real KMS calls."""
    metered = MeteredKms(kms or build_kms(settings, master_key))
    cached = CachingKms(metered, ttl_seconds=dek_ttl_seconds)
    keys = KeyManager(sessions, cached, audit, policy=policy)
    return FieldCrypto(keys, metered.metrics)
