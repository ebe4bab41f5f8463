"""Root of every error the exchange raises on purpose.

ExchangeError
 ├── ConfigurationError      bad settings or start-up conditions
 ├── KafkaUnavailable        the broker cannot be reached / does not answer
 ├── NotFound                a thing does not exist (or the caller may not know it does)
 ├── Conflict                a thing exists already / state does not allow the change
 ├── InvalidInput            the caller sent something malformed
 ├── Forbidden               the caller may not do this
 └── DependencyUnavailable   KMS, policy store, audit sink — fail closed (503)

Each package subclasses these; ``gateway/errors.py`` maps them to HTTP.
"""

from __future__ import annotations

from typing import Any


class ExchangeError(Exception):
    """Base class; ``code`` is a stable machine-readable identifier."""

    code: str = "exchange_error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class ConfigurationError(ExchangeError):
    code = "configuration_error"


class KafkaUnavailable(ExchangeError):
    code = "kafka_unavailable"


class NotFound(ExchangeError):
    code = "not_found"


class Conflict(ExchangeError):
    code = "conflict"


class InvalidInput(ExchangeError):
    code = "invalid_input"


class Forbidden(ExchangeError):
    code = "forbidden"


class DependencyUnavailable(ExchangeError):
    code = "dependency_unavailable"
