"""Errors of field-level encryption; all are :class:`exchange.errors.ExchangeError` subclasses.

Messages never carry key material, plaintext or ciphertext.
"""

from __future__ import annotations

from exchange.errors import DependencyUnavailable, InvalidInput, NotFound


class KmsUnavailable(DependencyUnavailable):
    """The KMS cannot answer (down, locked, misconfigured): fail closed, 503."""

    code = "kms_unavailable"


class KekNotFound(DependencyUnavailable):
    """The KMS does not hold a KEK the control plane refers to (e.g. a keystore that is not
    shared between gateway replicas): the server's state, not the caller's mistake — 503."""

    code = "kek_not_found"


class KeyShredded(NotFound):
    """The DEK version was destroyed: data under it is permanently unreadable."""

    code = "key_shredded"


class IntegrityFailure(InvalidInput):
    """An envelope failed authentication: tampered, truncated or moved to another context."""

    code = "envelope_integrity"
