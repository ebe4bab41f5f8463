"""The small ports the data-plane use cases need, as Protocols.

Each use case takes only these (not a service container), so unit tests wire in-memory fakes
(`tests/unit/dataplane/fakes.py`) and the composition root (`gateway/bootstrap.py`) wires the
real catalog, agreements, consents, registry and field crypto.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from consent.domain import CatalogEntry, ConsentRef, Grant
from exchange.crypto.fields import OpenedRecord
from exchange.kafka.port import OutRecord, Position
from schemas.classification import FieldInfo
from schemas.registry import SchemaVersion, StoredSchema


class CatalogPort(Protocol):
    def get(self, topic: str) -> CatalogEntry: ...


class GrantsPort(Protocol):
    def current_grant(self, consumer_dept: str, topic: str, now: datetime) -> Grant | None: ...

    def on_change(self, listener: Callable[[str, str], None]) -> None: ...


class ConsentsPort(Protocol):
    def active_consents(
        self, consumer: str, topic: str, subjects: set[str], now: datetime
    ) -> dict[str, ConsentRef]: ...


class SchemasPort(Protocol):
    def by_id(self, schema_id: int) -> StoredSchema: ...

    def version(
        self, subject: str, version: int | str = "latest", *, deleted: bool = False
    ) -> SchemaVersion: ...

    def usages(self, schema_id: int, *, deleted: bool = False) -> list[tuple[str, int]]: ...

    def latest_fields(self, subject: str) -> list[FieldInfo] | None: ...

    def register(
        self,
        subject: str,
        schema: str,
        references: list[dict[str, Any]] | None = None,
        *,
        schema_type: str = "AVRO",
        actor: str = "system",
        actor_is_admin: bool = False,
        schema_id: int | None = None,
        version: int | None = None,
    ) -> int: ...

    def set_config(self, subject: str | None, level: str, *, actor: str = "system") -> Any: ...


class SealerPort(Protocol):
    """Field encryption as the data plane sees it (exchange.crypto.FieldCrypto)."""

    def seal(
        self,
        *,
        topic: str,
        owner: str,
        cipher: str = "AES256_GCM",
        sealed_schema_id: int,
        key: bytes | None,
        record: dict[str, Any],
        fields: dict[str, Any],
    ) -> dict[str, Any]: ...

    def open(
        self,
        *,
        topic: str,
        sealed_schema_id: int,
        key: bytes | None,
        record: dict[str, Any],
        fields: dict[str, Any],
        granted: set[str],
    ) -> OpenedRecord: ...


@runtime_checkable
class KeyGenerations(Protocol):
    """A sealer that can say whether ready data keys were taken out (shredded, rotated,
    dropped) since a moment: the number only grows, by each such change. Values opened
    before a change are not delivered after it (:class:`dataplane.delivery.Prepared`)."""

    def key_generation(self) -> int: ...


class TransactionsPort(Protocol):
    """The part of the Kafka port the group committer needs: one transaction over several
    (topic, records) parts, with a hook that runs while it is open and aborts it by raising."""

    def publish_transaction(
        self,
        parts: Sequence[tuple[str, Sequence[OutRecord]]],
        before_commit: Callable[[list[list[Position]]], None] | None = None,
    ) -> list[list[Position]]: ...
