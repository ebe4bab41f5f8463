"""Errors of an import: each says what was wrong and what to do."""

from __future__ import annotations

from exchange.errors import ExchangeError, InvalidInput


class ImportFailed(ExchangeError):
    """The import cannot start or go on (the checkpoint keeps what was done)."""

    code = "import_failed"


class SourceError(InvalidInput):
    """The source cannot be read: undecodable, empty, unknown sheet, bad SQL URL..."""

    code = "import_source"
