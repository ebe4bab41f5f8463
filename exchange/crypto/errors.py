"""Errors of field-level encryption; all are :class:`exchange.errors.ExchangeError` subclasses.

Messages never carry key material, plaintext or ciphertext.
"""

from __future__ import annotations

from exchange.errors import DependencyUnavailable, InvalidInput, NotFound


class KmsUnavailable(DependencyUnavailable):
    """The KMS cannot answer (down, locked, misconfigured): fail closed, 503."""

    code = "kms_unavailable"


class KekNotFound(NotFound):
    code = "kek_not_found"


class KeyShredded(NotFound):
    """The DEK version was destroyed: data under it is permanently unreadable."""

    code = "key_shredded"


class IntegrityFailure(InvalidInput):
    """An envelope failed authentication: tampered, truncated or moved to another context."""

    code = "envelope_integrity"
