"""What an in-process gateway writes, and on whose behalf: for "a refusal changes nothing".

An observer, not a stand-in: it listens to the gateway's own SQLAlchemy engine (every INSERT,
UPDATE, DELETE, with the table and the request id of the HTTP request that ran it) and wraps
the one Kafka entry point data records take (``publish_transaction``, group commit included),
calling straight through. The request id is :data:`exchange.logs.REQUEST_ID`, which the
gateway sets from the client's ``X-Request-ID`` and which worker threads inherit.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from exchange.logs import REQUEST_ID

_WRITE = re.compile(
    r"^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)\"?", re.IGNORECASE
)


@dataclass
class WriteSpy:
    engine: Engine
    kafka: Any
    sql: list[tuple[str | None, str]] = field(default_factory=list)  # (request id, table)
    kafka_writes: list[tuple[str | None, str]] = field(default_factory=list)  # (cell, topic)
    cell: str | None = None  # the matrix cell being sent, set by the test
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> WriteSpy:
        event.listen(self.engine, "before_cursor_execute", self._on_sql)
        inner = self.kafka.publish_transaction

        def publish_transaction(
            parts: Sequence[tuple[str, Sequence[Any]]], *args: Any, **kwargs: Any
        ) -> Any:
            with self._lock:
                self.kafka_writes.extend((self.cell, topic) for topic, _ in parts)
            return inner(parts, *args, **kwargs)

        self.kafka.publish_transaction = publish_transaction
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on_sql)
        del self.kafka.publish_transaction  # the class's method again

    def _on_sql(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        m = _WRITE.match(statement)
        if m:
            with self._lock:
                self.sql.append((REQUEST_ID.get(), m.group(1).lower()))

    def tables_written_by(self, request_id: str) -> set[str]:
        with self._lock:
            return {t for rid, t in self.sql if rid == request_id}
