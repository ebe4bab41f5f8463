"""The Kafka adapter: admin, transactional publishing, durable single sends, and reading.

kafka-python exceptions are translated here into :mod:`exchange.errors` so nothing above this
module needs to know which client library is in use.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from exchange import metrics
from exchange.errors import Conflict, InvalidInput, KafkaUnavailable, NotFound
from exchange.kafka.port import InRecord, OutRecord, Position, topic_config
from exchange.kafka.security import KafkaSecurity
from exchange.kafka.transactional import SlotPool, transactional_id

# The value types live in the port; re-exported for callers not yet switched to it.
__all__ = ["InRecord", "KafkaAdapter", "OutRecord", "Position", "TopicReader"]

log = logging.getLogger(__name__)

TX_RETRY_BACKOFF_MS = 10


def end_transaction(producer: KafkaProducer, *, commit: bool, timeout_ms: int) -> None:
    """``commit_transaction()``/``abort_transaction()`` with a bound: kafka-python waits for
    their result without one (a worker hung in ``abort_transaction()`` for over six minutes
    after a broker kill). Does what those methods do, on the same transaction manager, then
    waits at most ``timeout_ms``; on timeout the caller replaces the producer."""
    manager = producer._transaction_manager
    result = manager.begin_commit() if commit else manager.begin_abort()
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout_ms):
        what = "commit" if commit else "abort"
        raise KafkaTimeoutError(f"transaction {what} did not finish within {timeout_ms} ms")


# Record-level refusals: retrying cannot help, and they are one sender's doing, not an outage.
_REFUSED = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
)


class KafkaAdapter(SlotPool[KafkaProducer]):
    """The kafka-python implementation of :class:`~exchange.kafka.port.KafkaPort`: one per
    process, a lazily created admin client and a small pool of transactional producers."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "exchange",
        replication: int = 1,
        request_timeout_ms: int = 15000,
        transactional_producers: int = 4,
        security: KafkaSecurity | None = None,
        transactional_prefix: str | None = None,
        transaction_timeout_ms: int = 30000,
    ) -> None:
        self.bootstrap = bootstrap
        # Every client this adapter opens authenticates the same way (SASL/TLS or none).
        self._auth = (security or KafkaSecurity()).kafka_python_config()
        self._unreachable = f"Kafka at {bootstrap} is unreachable or refused our credentials"
        self.client_id = client_id
        self.replication = replication
        self.timeout_ms = request_timeout_ms
        self._admin: KafkaAdminClient | None = None
        # A transaction holds its producer until commit; a small pool lets concurrent batches
        # (several publishing clients) overlap their round trips instead of queueing.
        # Stable ids (see exchange.kafka.transactional): slot n is always "<prefix>-tx<n>", so
        # a restarted process fences the transactions its predecessor left open.
        self._tx_prefix = transactional_prefix or f"{client_id}-{uuid.uuid4().hex[:12]}"
        self._tx_timeout_ms = transaction_timeout_ms
        self._tx_idle: list[tuple[int, KafkaProducer]] = []
        self._tx_free = list(range(transactional_producers))  # slots without a producer
        self._tx_all: list[KafkaProducer] = []
        self._tx_slots = threading.BoundedSemaphore(transactional_producers)
        self._plain: KafkaProducer | None = None
        self._known: set[str] = set()  # topics seen to exist (a send to others blocks 60 s)
        self._lock = threading.Lock()
        self._offsets: KafkaConsumer | None = None  # end_offsets only: never fetches
        self._offsets_lock = threading.Lock()

    # -- admin ---------------------------------------------------------------------------
    def admin(self) -> KafkaAdminClient:
        with self._lock:
            if self._admin is None:
                try:
                    self._admin = KafkaAdminClient(
                        bootstrap_servers=self.bootstrap,
                        client_id=f"{self.client_id}-admin",
                        request_timeout_ms=self.timeout_ms,
                        bootstrap_timeout_ms=self.timeout_ms,
                        **self._auth,
                    )
                except (KafkaError, OSError) as exc:
                    metrics.KAFKA_ERRORS.labels("admin").inc()
                    raise KafkaUnavailable(self._unreachable) from exc
            return self._admin

    def create_topic(
        self, name: str, partitions: int, *, compact: bool = False, retention_ms: int | None = None
    ) -> None:
        config = topic_config(self.replication)
        if compact:
            config["cleanup.policy"] = "compact"
        if retention_ms is not None:
            config["retention.ms"] = str(retention_ms)
        topic = NewTopic(name, partitions, self.replication, topic_configs=config)
        try:
            self.admin().create_topics([topic], timeout_ms=self.timeout_ms)
        except TopicAlreadyExistsError as exc:
            raise Conflict(f"Kafka topic {name} already exists") from exc
        except KafkaError as exc:
            metrics.KAFKA_ERRORS.labels("admin").inc()
            raise KafkaUnavailable(f"creating topic {name} failed: {exc}") from exc

    def ensure_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        compact: bool = False,
        retention_ms: int | None = None,
    ) -> None:
        with contextlib.suppress(Conflict):
            self.create_topic(name, partitions, compact=compact, retention_ms=retention_ms)

    def partitions(self, topic: str) -> list[int]:
        consumer = self._consumer()
        try:
            parts = consumer.partitions_for_topic(topic)
        finally:
            consumer.close()
        if not parts:
            raise NotFound(f"Kafka topic {topic} does not exist")
        return sorted(parts)

    def _require_topic(self, topic: str) -> None:
        """NotFound now rather than a 60 s metadata wait inside ``send``."""
        if topic not in self._known:
            self.partitions(topic)
            self._known.add(topic)

    def list_topics(self) -> list[str]:
        try:
            return list(self.admin().list_topics())
        except KafkaError as exc:
            metrics.KAFKA_ERRORS.labels("admin").inc()
            raise KafkaUnavailable("listing topics failed") from exc

    def ping(self) -> bool:
        try:
            self.admin().list_topics()
            return True
        except (KafkaError, KafkaUnavailable, OSError):
            with self._lock:
                if self._admin is not None:
                    self._admin.close()
                self._admin = None
            return False

    # -- producing -----------------------------------------------------------------------
    def _new_transactional(self, slot: int) -> KafkaProducer:
        try:
            producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.client_id}-tx",
                transactional_id=transactional_id(self._tx_prefix, slot),
                transaction_timeout_ms=self._tx_timeout_ms,
                enable_idempotence=True,
                acks="all",
                linger_ms=0,
                # A transaction begun right after the last commit is refused with
                # CONCURRENT_TRANSACTIONS until its markers are written (a few ms), and
                # kafka-python sleeps the full back-off before retrying (the Java client
                # uses 20 ms there): the default 100 ms made such publishes wait 100 ms.
                retry_backoff_ms=TX_RETRY_BACKOFF_MS,
                max_request_size=16 * 1024 * 1024,
                **self._bounded(),
                **self._auth,
            )
            producer.init_transactions()
        except KafkaError as exc:
            metrics.KAFKA_ERRORS.labels("producer").inc()
            raise KafkaUnavailable("Kafka transactional producer unavailable") from exc
        with self._lock:
            self._tx_all.append(producer)
        return producer

    def _take(self) -> tuple[int, KafkaProducer]:
        """An idle producer, else a new one on a free slot (the caller holds ``_tx_slots``)."""
        with self._lock:
            if self._tx_idle:
                # Least recently used first: a producer whose last commit's markers are
                # still being written is refused (CONCURRENT_TRANSACTIONS) and must retry.
                return self._tx_idle.pop(0)
            slot = self._tx_free.pop(0)
        try:
            return slot, self._new_transactional(slot)
        except BaseException:
            with self._lock:
                self._tx_free.append(slot)
            raise

    def publish_atomically(
        self,
        topic: str,
        records: Sequence[OutRecord],
        before_commit: Callable[[list[Position]], None] | None = None,
    ) -> list[Position]:
        """Write all records in one Kafka transaction; all become visible or none do.

        ``before_commit`` gets the records' positions while the transaction is still open; if
        it raises, the transaction is aborted and nothing becomes visible (used to make the
        audit event durable before the records are)."""
        hook = None if before_commit is None else (lambda parts: before_commit(parts[0]))
        return self.publish_transaction([(topic, records)], hook)[0]

    def publish_transaction(
        self,
        parts: Sequence[tuple[str, Sequence[OutRecord]]],
        before_commit: Callable[[list[list[Position]]], None] | None = None,
    ) -> list[list[Position]]:
        """Write several (topic, records) parts in one Kafka transaction: all or nothing.

        Returns each part's positions in order; ``before_commit`` gets them while the
        transaction is open and aborts it by raising (group commit: many requests, one
        transaction, one audit append)."""
        for name in dict.fromkeys(t for t, _ in parts):
            self._require_topic(name)
        with self._tx_slots:
            slot, producer = self._take()
            healthy = True
            topic = parts[0][0] if parts else ""
            try:
                producer.begin_transaction()
                futures = []
                for topic, records in parts:
                    futures.append(
                        [
                            producer.send(topic, value=r.value, key=r.key, headers=list(r.headers))
                            for r in records
                        ]
                    )
                # One deadline for the flush and every acknowledgement, not one each.
                deadline = time.monotonic() + self.timeout_ms / 1000
                producer.flush(timeout=self.timeout_ms / 1000)
                positions: list[list[Position]] = []
                for (part_topic, _), fs in zip(parts, futures, strict=True):
                    topic = part_topic  # named in the error if this part fails
                    metas = [f.get(timeout=max(0.0, deadline - time.monotonic())) for f in fs]
                    positions.append([Position(m.partition, m.offset) for m in metas])
                if before_commit is not None:
                    try:
                        before_commit(positions)
                    except BaseException:
                        healthy = self._abort(producer)
                        raise
                end_transaction(producer, commit=True, timeout_ms=self.timeout_ms)
            except UnknownTopicOrPartitionError as exc:
                healthy = self._abort(producer)
                raise NotFound(f"Kafka topic {topic} does not exist") from exc
            except _REFUSED as exc:
                # The broker refuses these records whatever we retry: the sender's fault. The
                # producer is replaced: after the refusal kafka-python bumps its epoch and its
                # next send fails with OutOfOrderSequenceNumber.
                if self._abort(producer):
                    with contextlib.suppress(KafkaError):
                        producer.close(timeout=1)
                healthy = False
                raise InvalidInput(
                    f"Kafka refused a record for {topic}: {type(exc).__name__}",
                    code="record_refused",
                ) from exc
            except KafkaError as exc:
                healthy = self._abort(producer)
                metrics.KAFKA_ERRORS.labels("producer").inc()
                raise KafkaUnavailable(f"publishing to {topic} failed: {exc}") from exc
            finally:
                with self._lock:
                    if healthy:
                        self._tx_idle.append((slot, producer))
                    else:
                        self._tx_free.append(slot)
                        if producer in self._tx_all:
                            self._tx_all.remove(producer)
        return positions

    def _abort(self, producer: KafkaProducer) -> bool:
        """Abort the open transaction; False if the producer is broken (fenced, closed)."""
        try:
            end_transaction(producer, commit=False, timeout_ms=self.timeout_ms)
            return True
        except KafkaError:
            log.warning("aborting Kafka transaction failed; recreating producer")
            with contextlib.suppress(KafkaError):
                producer.close(timeout=1)
            return False

    def send_durably(self, topic: str, record: OutRecord) -> Position:
        """One record, acks=all, idempotent, waited for: used for audit events."""
        return self.send_many_durably(topic, [record])[0]

    def send_many_durably(self, topic: str, records: Sequence[OutRecord]) -> list[Position]:
        """Records in order, acks=all, idempotent; returns once every one is acknowledged."""
        self._require_topic(topic)
        try:
            producer = self._durable()
            futures = [
                producer.send(topic, value=r.value, key=r.key, headers=list(r.headers))
                for r in records
            ]
            producer.flush(timeout=self.timeout_ms / 1000)
            metas = [f.get(timeout=self.timeout_ms / 1000) for f in futures]
        except KafkaError as exc:
            metrics.KAFKA_ERRORS.labels("producer").inc()
            raise KafkaUnavailable(f"durable write to {topic} failed: {exc}") from exc
        return [Position(m.partition, m.offset) for m in metas]

    def _durable(self) -> KafkaProducer:
        with self._lock:
            if self._plain is None:
                self._plain = KafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    client_id=f"{self.client_id}-durable",
                    enable_idempotence=True,
                    acks="all",
                    linger_ms=0,
                    **self._bounded(),
                    **self._auth,
                )
            return self._plain

    def _bounded(self) -> dict[str, int]:
        """Timeouts so that no call waits longer than about the request timeout."""
        return {
            "request_timeout_ms": self.timeout_ms,
            "bootstrap_timeout_ms": self.timeout_ms,
            "max_block_ms": self.timeout_ms,
        }

    # -- reading -------------------------------------------------------------------------
    def _consumer(self, **extra: object) -> KafkaConsumer:
        try:
            return KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.client_id}-r",
                enable_auto_commit=False,
                isolation_level="read_committed",
                request_timeout_ms=max(self.timeout_ms, 31000),
                bootstrap_timeout_ms=self.timeout_ms,
                **self._auth,
                **extra,
            )
        except (KafkaError, OSError) as exc:
            metrics.KAFKA_ERRORS.labels("consumer").inc()
            raise KafkaUnavailable(self._unreachable) from exc

    def end_offsets(self, topic: str) -> dict[int, int]:
        """On a consumer of its own that never fetches (see the port), one at a time:
        kafka-python's consumer is not thread-safe."""
        with self._offsets_lock:
            if self._offsets is None:
                self._offsets = self._consumer()
            try:
                parts = self._offsets.partitions_for_topic(topic)
                if not parts:
                    raise NotFound(f"Kafka topic {topic} does not exist")
                ends = self._offsets.end_offsets([TopicPartition(topic, p) for p in sorted(parts)])
            except KafkaError as exc:
                metrics.KAFKA_ERRORS.labels("consumer").inc()
                raise KafkaUnavailable(f"offsets of {topic} failed: {exc}") from exc
            return {tp.partition: off for tp, off in ends.items()}

    def reader(self, topic: str) -> TopicReader:
        consumer = self._consumer(max_poll_records=2000)
        try:
            return TopicReader(consumer, topic)
        except BaseException:
            consumer.close()
            raise

    def close(self) -> None:
        with self._lock:
            producers, self._tx_all = self._tx_all, []
            self._tx_free.extend(slot for slot, _ in self._tx_idle)
            self._tx_idle = []
        with self._offsets_lock:
            offsets, self._offsets = self._offsets, None
        for closable in (*producers, self._plain, self._admin, offsets):
            if closable is not None:
                with contextlib.suppress(KafkaError):
                    closable.close()
        self._plain = self._admin = None


class TopicReader:
    """A group-less reader of one topic: assign partitions, seek, poll committed records."""

    def __init__(self, consumer: KafkaConsumer, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic
        try:
            parts = consumer.partitions_for_topic(topic)
        except KafkaError as exc:
            metrics.KAFKA_ERRORS.labels("consumer").inc()
            raise KafkaUnavailable(f"reading {topic} failed: {exc}") from exc
        if not parts:
            raise NotFound(f"Kafka topic {topic} does not exist")
        self.partitions = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(self.partitions)

    def seek(self, offsets: dict[int, int]) -> None:
        for tp in self.partitions:
            if tp.partition in offsets:
                self.consumer.seek(tp, offsets[tp.partition])
            else:
                self.consumer.seek_to_beginning(tp)

    def seek_to_end(self) -> None:
        self.consumer.seek_to_end(*self.partitions)

    def end_offsets(self) -> dict[int, int]:
        ends = self.consumer.end_offsets(self.partitions)
        return {tp.partition: off for tp, off in ends.items()}

    def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]:
        found = self.consumer.offsets_for_times({tp: timestamp_ms for tp in self.partitions})
        ends = self.end_offsets()
        return {
            tp.partition: (o.offset if o is not None else ends[tp.partition])
            for tp, o in found.items()
        }

    def positions(self) -> dict[int, int]:
        return {tp.partition: self.consumer.position(tp) for tp in self.partitions}

    def poll(self, timeout_ms: int = 500, max_records: int = 500) -> list[InRecord]:
        try:
            batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            metrics.KAFKA_ERRORS.labels("consumer").inc()
            raise KafkaUnavailable(f"reading {self.topic} failed: {exc}") from exc
        out: list[InRecord] = []
        for tp, msgs in batches.items():
            for m in msgs:
                out.append(
                    InRecord(
                        tp.topic,
                        tp.partition,
                        m.offset,
                        m.timestamp,
                        m.key,
                        m.value,
                        tuple(m.headers or ()),
                    )
                )
        out.sort(key=lambda r: (r.partition, r.offset))
        return out

    def close(self) -> None:
        self.consumer.close()
