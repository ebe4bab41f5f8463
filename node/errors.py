"""Errors of the county node (all under :class:`exchange.errors.ExchangeError`).

ExchangeError
 ├── ConfigurationError ── NodeConfigError   bad node home, loose credential file
 ├── DependencyUnavailable ── OutboxFull     the local disk (or its quota) is full: 507
 └── Conflict / InvalidInput / NotFound      as on the gateway
"""

from __future__ import annotations

from exchange.errors import ConfigurationError, DependencyUnavailable


class NodeConfigError(ConfigurationError):
    code = "node_configuration_error"


class OutboxFull(DependencyUnavailable):
    """Nothing of the request was stored: the local publisher must keep it and retry."""

    code = "outbox_full"
