"""Registry errors: each carries Confluent's HTTP status and ``error_code``.

RegistryError (ExchangeError)
 ├── SubjectNotFound          404 / 40401      ├── InvalidSchema            422 / 42201
 ├── VersionNotFound          404 / 40402      ├── InvalidVersion           422 / 42202
 ├── SchemaNotFound           404 / 40403      ├── InvalidCompatibility     422 / 42203
 ├── SubjectSoftDeleted       404 / 40404      ├── InvalidMode              422 / 42204
 ├── SubjectNotSoftDeleted    404 / 40405      ├── OperationNotPermitted    422 / 42205
 ├── VersionSoftDeleted       404 / 40406      ├── ReferenceExists          422 / 42206
 ├── VersionNotSoftDeleted    404 / 40407      ├── IdDoesNotMatch           422 / 42207
 ├── SubjectConfigNotFound    404 / 40408      ├── IncompatibleSchema       409 / 40901
 │                                             └── ClassificationDowngrade  403 / 40301
 └── SubjectModeNotFound      404 / 40409
Each also subclasses the matching ``exchange.errors`` class, so generic handlers still work.
"""

from __future__ import annotations

from typing import Any

from exchange.errors import Conflict, ExchangeError, Forbidden, InvalidInput, NotFound


class RegistryError(ExchangeError):
    http_status: int = 500
    error_code: int = 50001


class SubjectNotFound(RegistryError, NotFound):
    http_status, error_code = 404, 40401


class VersionNotFound(RegistryError, NotFound):
    http_status, error_code = 404, 40402


class SchemaNotFound(RegistryError, NotFound):
    http_status, error_code = 404, 40403


class SubjectSoftDeleted(RegistryError, NotFound):
    http_status, error_code = 404, 40404


class SubjectNotSoftDeleted(RegistryError, Conflict):
    http_status, error_code = 404, 40405


class VersionSoftDeleted(RegistryError, NotFound):
    http_status, error_code = 404, 40406


class VersionNotSoftDeleted(RegistryError, Conflict):
    http_status, error_code = 404, 40407


class SubjectConfigNotFound(RegistryError, NotFound):
    http_status, error_code = 404, 40408


class SubjectModeNotFound(RegistryError, NotFound):
    http_status, error_code = 404, 40409


class InvalidSchema(RegistryError, InvalidInput):
    http_status, error_code = 422, 42201


class InvalidVersion(RegistryError, InvalidInput):
    http_status, error_code = 422, 42202


class InvalidCompatibility(RegistryError, InvalidInput):
    http_status, error_code = 422, 42203


class InvalidMode(RegistryError, InvalidInput):
    http_status, error_code = 422, 42204


class OperationNotPermitted(RegistryError, InvalidInput):
    http_status, error_code = 422, 42205


class ReferenceExists(RegistryError, InvalidInput):
    http_status, error_code = 422, 42206


class IdDoesNotMatch(RegistryError, InvalidInput):
    http_status, error_code = 422, 42207


class IncompatibleSchema(RegistryError, Conflict):
    http_status, error_code = 409, 40901

    def __init__(self, message: str, messages: list[str] | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.messages = messages or []


class ClassificationDowngrade(RegistryError, Forbidden):
    http_status, error_code = 403, 40301
