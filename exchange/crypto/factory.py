"""Build the field crypto from settings: choose the KMS provider, add the wrappers."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from exchange.auditing import AuditSink
from exchange.crypto.fields import FieldCrypto
from exchange.crypto.keys import KeyManager, RotationPolicy
from exchange.crypto.kms import Kms
from exchange.crypto.kms_local import LocalKms, keystore_path
from exchange.crypto.kms_wrappers import CachingKms, MeteredKms
from exchange.crypto.models import DekVersionRow
from exchange.db import transaction
from exchange.errors import ConfigurationError
from exchange.settings import Settings

log = logging.getLogger(__name__)


def ensure_local_keystore(kms: LocalKms, sessions: sessionmaker[Session]) -> None:
    """First start creates the keystore; if DEKs wrapped by it exist, never re-create it."""
    if kms.path.exists():
        return
    with transaction(sessions) as s:
        wrapped = s.scalar(
            select(func.count())
            .select_from(DekVersionRow)
            .where(DekVersionRow.wrapped.is_not(None))
        )
    if wrapped:
        # Fail closed on use (503) rather than start a fresh keystore and orphan the DEKs.
        log.error("local KMS keystore %s is missing but %d wrapped DEKs exist", kms.path, wrapped)
        return
    kms.init()


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
    provider = kms or build_kms(settings, master_key)
    if isinstance(provider, LocalKms):
        ensure_local_keystore(provider, sessions)
    metered = MeteredKms(provider)
    cached = CachingKms(metered, ttl_seconds=dek_ttl_seconds)
    keys = KeyManager(sessions, cached, audit, policy=policy)
    return FieldCrypto(keys, metered.metrics, getattr(provider, "close", None))
