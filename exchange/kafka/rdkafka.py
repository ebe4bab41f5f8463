"""The librdkafka (confluent-kafka) implementation of :class:`~exchange.kafka.port.KafkaPort`.

Same contract as the kafka-python adapter in :mod:`exchange.kafka.client`, at a multiple of
its throughput. Every blocking call takes a timeout derived from ``request_timeout_ms``;
confluent-kafka's errors are translated into :mod:`exchange.errors` here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.cimpl import NewTopic

from exchange import metrics
from exchange.errors import Conflict, ExchangeError, InvalidInput, KafkaUnavailable, NotFound
from exchange.kafka.port import Header, InRecord, OutRecord, Position, topic_config
from exchange.kafka.security import KafkaSecurity
from exchange.kafka.transactional import SlotPool, transactional_id

log = logging.getLogger(__name__)

_UNKNOWN_TOPIC = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
# Record-level refusals: retrying cannot help, and they are one sender's doing, not an outage.
_REFUSED = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
}


def _translate(exc: BaseException, what: str, topic: str | None = None) -> ExchangeError:
    """A confluent-kafka error as the exchange's own (the message never holds record data)."""
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is not None and err.code() in _UNKNOWN_TOPIC:
        return NotFound(f"Kafka topic {topic} does not exist")
    if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
        return Conflict(f"Kafka topic {topic} already exists")
    if err is not None and err.code() in _REFUSED:
        return InvalidInput(
            f"Kafka refused a record for {topic}: {err.name()}", code="record_refused"
        )
    return KafkaUnavailable(f"{what} failed: {exc}")


_LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]

_TRANSIENT = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE})


def _transient(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return err is not None and (err.code() in _TRANSIENT or err.retriable())


class RdKafkaAdapter(SlotPool[Producer]):
    """One per process: an admin client, a durable producer, and a small pool of
    transactional producers (a transaction holds its producer until commit)."""

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
        self._auth = (security or KafkaSecurity()).librdkafka_config()
        self.client_id = client_id
        self.replication = replication
        self.timeout_ms = request_timeout_ms
        self.timeout_s = request_timeout_ms / 1000
        self._admin: AdminClient | None = None
        # Stable ids (see exchange.kafka.transactional): slot n is always "<prefix>-tx<n>", so
        # a restarted process fences the transactions its predecessor left open.
        self._tx_prefix = transactional_prefix or f"{client_id}-{uuid.uuid4().hex[:12]}"
        self._tx_timeout_ms = transaction_timeout_ms
        self._tx_idle: list[tuple[int, Producer]] = []
        self._tx_free = list(range(transactional_producers))  # slots without a producer
        self._tx_slots = threading.BoundedSemaphore(transactional_producers)
        self._plain: Producer | None = None
        self._known: set[str] = set()  # topics seen to exist
        self._partitions: dict[str, list[int]] = {}  # for end_offsets: as first seen
        self._lock = threading.Lock()

    def _conf(self, suffix: str, **extra: Any) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": f"{self.client_id}-{suffix}",
            "socket.timeout.ms": self.timeout_ms,
            # Each refused reconnect would be logged at ERROR; the caller gets KafkaUnavailable.
            "logger": log,
            "log_level": 2,
            "error_cb": _error_cb("consumer" if suffix == "r" else _ROLES.get(suffix, "producer")),
            **self._auth,
            **extra,
        }

    # -- admin ---------------------------------------------------------------------------
    def admin(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient(self._conf("admin"))
            return self._admin

    def create_topic(
        self, name: str, partitions: int, *, compact: bool = False, retention_ms: int | None = None
    ) -> None:
        config = topic_config(self.replication)
        if compact:
            config["cleanup.policy"] = "compact"
        if retention_ms is not None:
            config["retention.ms"] = str(retention_ms)
        topic = NewTopic(name, partitions, self.replication, config=config)
        futures = self.admin().create_topics(
            [topic], request_timeout=self.timeout_s, operation_timeout=self.timeout_s
        )
        try:
            futures[name].result(timeout=self.timeout_s * 2)
        except (KafkaException, TimeoutError) as exc:
            raise _translate(exc, f"creating topic {name}", name) from exc
        self._await_metadata(name)

    def _await_metadata(self, name: str) -> None:
        """The broker learns of a new topic a moment after the controller answers; return
        once it has, so that the caller can use the topic at once."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self.partitions(name)
                return
            except NotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

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
        try:
            meta = self.admin().list_topics(topic=topic, timeout=self.timeout_s)
        except KafkaException as exc:
            raise _translate(exc, f"metadata for {topic}", topic) from exc
        found = meta.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise NotFound(f"Kafka topic {topic} does not exist")
        return sorted(found.partitions)

    def _require_topic(self, topic: str) -> None:
        """NotFound now: librdkafka would hold records for an unknown topic for 30 s."""
        if topic not in self._known:
            self.partitions(topic)
            self._known.add(topic)

    def list_topics(self) -> list[str]:
        try:
            return list(self.admin().list_topics(timeout=self.timeout_s).topics)
        except KafkaException as exc:
            raise KafkaUnavailable(f"listing topics failed: {exc}") from exc

    def ping(self) -> bool:
        try:
            self.admin().list_topics(timeout=min(self.timeout_s, 5.0))
            return True
        except KafkaException:
            return False

    # -- producing -----------------------------------------------------------------------
    def _producer_conf(self, suffix: str, **extra: Any) -> dict[str, Any]:
        return self._conf(
            suffix,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 1,
                "message.max.bytes": 16 * 1024 * 1024,
                "message.timeout.ms": self.timeout_ms,
                **extra,
            },
        )

    def _new_transactional(self, slot: int) -> Producer:
        producer = Producer(
            self._producer_conf(
                "tx",
                **{
                    "transactional.id": transactional_id(self._tx_prefix, slot),
                    "transaction.timeout.ms": self._tx_timeout_ms,
                    # librdkafka refuses message/socket timeouts above the transaction's.
                    "message.timeout.ms": min(self.timeout_ms, self._tx_timeout_ms),
                    "socket.timeout.ms": min(self.timeout_ms, self._tx_timeout_ms),
                },
            )
        )
        try:
            producer.init_transactions(self.timeout_s)
        except KafkaException as exc:
            _discard(producer)
            raise KafkaUnavailable(f"Kafka transactional producer unavailable: {exc}") from exc
        return producer

    def publish_atomically(
        self,
        topic: str,
        records: Sequence[OutRecord],
        before_commit: Callable[[list[Position]], None] | None = None,
    ) -> list[Position]:
        """Write all records in one Kafka transaction; all become visible or none do.

        ``before_commit`` gets the records' positions (from the delivery reports, so the
        producer is flushed first) while the transaction is still open; if it raises, the
        transaction is aborted and nothing becomes visible."""
        hook = None if before_commit is None else (lambda parts: before_commit(parts[0]))
        return self.publish_transaction([(topic, records)], hook)[0]

    def publish_transaction(
        self,
        parts: Sequence[tuple[str, Sequence[OutRecord]]],
        before_commit: Callable[[list[list[Position]]], None] | None = None,
    ) -> list[list[Position]]:
        """Several (topic, records) parts in one Kafka transaction, all or nothing; each
        part's positions in order. ``before_commit`` as for :meth:`publish_atomically`."""
        for name in dict.fromkeys(t for t, _ in parts):
            self._require_topic(name)
        with self._tx_slots:
            slot, producer = self._take()
            try:
                producer.begin_transaction()
                positions = self._produce_and_wait(producer, parts)
                if before_commit is not None:
                    before_commit(positions)
                producer.commit_transaction(self.timeout_s)
            except BaseException as exc:
                healthy = self._abort(producer)
                if healthy and isinstance(exc, InvalidInput):
                    # A refused record: the producer is replaced, because the records of its
                    # next transaction came back purged (_PURGE_QUEUE) in the contract test.
                    _discard(producer)
                if healthy and not isinstance(exc, InvalidInput):
                    self._release(slot, producer)
                else:
                    self._free(slot)
                if isinstance(exc, KafkaException):
                    what = ", ".join(dict.fromkeys(t for t, _ in parts))
                    raise _translate(exc, f"publishing to {what}", what) from exc
                raise
            self._release(slot, producer)
        return positions

    def _take(self) -> tuple[int, Producer]:
        """An idle producer, else a new one on a free slot (the caller holds ``_tx_slots``)."""
        with self._lock:
            if self._tx_idle:
                # Least recently used first: its last commit has had the most time to finish.
                return self._tx_idle.pop(0)
            slot = self._tx_free.pop(0)
        try:
            return slot, self._new_transactional(slot)
        except BaseException:
            self._free(slot)
            raise

    def _release(self, slot: int, producer: Producer) -> None:
        with self._lock:
            self._tx_idle.append((slot, producer))

    def _free(self, slot: int) -> None:
        with self._lock:
            self._tx_free.append(slot)

    def _abort(self, producer: Producer) -> bool:
        """Abort the open transaction; False (and the producer dropped) if that fails."""
        try:
            producer.abort_transaction(self.timeout_s)
            return True
        except KafkaException:
            log.warning("aborting Kafka transaction failed; replacing the producer")
            _discard(producer)
            return False

    def _produce_and_wait(
        self, producer: Producer, parts: Sequence[tuple[str, Sequence[OutRecord]]]
    ) -> list[list[Position]]:
        """Produce every part, wait for every delivery report; positions per part, in record
        order. A refused record raises its translated error, naming its topic."""
        results: list[list[Position | KafkaError | None]] = [[None] * len(r) for _, r in parts]

        def report(part: int, i: int) -> Callable[[KafkaError | None, Message], None]:
            def done(err: KafkaError | None, msg: Message) -> None:
                results[part][i] = err or Position(msg.partition() or 0, msg.offset() or 0)

            return done

        for n, (topic, records) in enumerate(parts):
            for i, r in enumerate(records):
                try:
                    producer.produce(
                        topic, r.value, r.key, headers=list(r.headers), on_delivery=report(n, i)
                    )
                except BufferError:
                    producer.poll(0.1)  # local queue full: serve reports, then retry once
                    producer.produce(
                        topic, r.value, r.key, headers=list(r.headers), on_delivery=report(n, i)
                    )
        deadline = time.monotonic() + self.timeout_s
        # flush() serves every thread's reports; ours may also be served by another thread.
        while any(x is None for xs in results for x in xs) and time.monotonic() < deadline:
            producer.flush(max(0.0, deadline - time.monotonic()))
        out: list[list[Position]] = []
        for (topic, _), xs in zip(parts, results, strict=True):
            got: list[Position] = []
            for x in xs:
                if x is None:
                    raise KafkaUnavailable(f"no acknowledgement from Kafka for {topic} in time")
                if isinstance(x, KafkaError):
                    raise _translate(KafkaException(x), f"publishing to {topic}", topic)
                got.append(x)
            out.append(got)
        return out

    def send_durably(self, topic: str, record: OutRecord) -> Position:
        """One record, acks=all, idempotent, waited for: used for audit events."""
        return self.send_many_durably(topic, [record])[0]

    def send_many_durably(self, topic: str, records: Sequence[OutRecord]) -> list[Position]:
        """Records in order, acks=all, idempotent; returns once every one is acknowledged."""
        self._require_topic(topic)
        with self._lock:
            if self._plain is None:
                self._plain = Producer(self._producer_conf("durable", **{"linger.ms": 0}))
            producer = self._plain
        try:
            return self._produce_and_wait(producer, [(topic, records)])[0]
        except KafkaException as exc:
            raise _translate(exc, f"durable write to {topic}", topic) from exc

    # -- reading -------------------------------------------------------------------------
    def end_offsets(self, topic: str) -> dict[int, int]:
        """ListOffsets (latest, read_committed) on the admin client's connection. A reader's
        own connection carries its background fetch, a long poll of up to fetch.wait.max.ms,
        and Kafka answers one connection's requests in order: there the question waited
        ~50 ms, and the audit log asks it in every append (its reconcile check)."""
        parts = self._partitions.get(topic)
        if parts is None:
            parts = self._partitions.setdefault(topic, self.partitions(topic))
        wanted = {TopicPartition(topic, p): _LATEST for p in parts}
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                futures = self.admin().list_offsets(
                    wanted,
                    isolation_level=IsolationLevel.READ_COMMITTED,
                    request_timeout=self.timeout_s,
                )
                return {tp.partition: f.result().offset for tp, f in futures.items()}
            except KafkaException as exc:
                # A new topic's leader settles a moment after creation: retry within bounds.
                if not _transient(exc) or time.monotonic() >= deadline:
                    raise _translate(exc, f"offsets of {topic}", topic) from exc
                time.sleep(0.05)

    def reader(self, topic: str) -> RdTopicReader:
        consumer = Consumer(
            self._conf(
                "r",
                **{
                    # Required by the client; never joined (assign only) nor committed to.
                    "group.id": f"{self.client_id}-readers",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 100,
                    # Prefetch per reader (default 64 MiB): readers are pooled and many.
                    "queued.max.messages.kbytes": 8192,
                },
            )
        )
        try:
            return RdTopicReader(consumer, topic, self.timeout_s)
        except BaseException:
            consumer.close()
            raise

    def close(self) -> None:
        with self._lock:
            producers, self._tx_idle = self._tx_idle, []
            self._tx_free.extend(slot for slot, _ in producers)
            plain, self._plain, self._admin = self._plain, None, None
        if plain is not None:
            plain.flush(self.timeout_s)
        for _, p in producers:
            _discard(p)


_ROLES = {"admin": "admin", "tx": "producer", "durable": "producer"}


def _error_cb(role: str) -> Callable[[KafkaError], None]:
    counter = metrics.KAFKA_ERRORS.labels(role)

    def on_error(err: KafkaError) -> None:
        counter.inc()
        log.debug("librdkafka: %s", err)

    return on_error


def _discard(producer: Producer) -> None:
    """Drop a producer without waiting on a broker that may be gone."""
    with contextlib.suppress(KafkaException, RuntimeError):
        producer.purge()
        producer.flush(0)


class RdTopicReader:
    """A group-less reader of one topic: partitions assigned at explicit offsets."""

    def __init__(self, consumer: Consumer, topic: str, timeout_s: float) -> None:
        self.consumer = consumer
        self.topic = topic
        self.timeout_s = timeout_s
        try:
            meta = consumer.list_topics(topic=topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise _translate(exc, f"metadata for {topic}", topic) from exc
        if meta is None or meta.error is not None or not meta.partitions:
            raise NotFound(f"Kafka topic {topic} does not exist")
        self.partitions = sorted(meta.partitions)
        # The offset of the next record per partition, as far as this reader knows.
        self._next: dict[int, int] = {}
        self._assigned = False
        self.seek({})

    def _go(self, offsets: dict[int, int]) -> None:
        """(Re)assign at explicit offsets. Never at a logical one (BEGINNING/END): librdkafka
        keeps a timed query for it that can fire after a later assignment and rewind the
        fetcher; and a plain re-assign would leave the old position reported."""
        self._next = dict(offsets)
        tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
        try:
            if self._assigned:
                self.consumer.unassign()
            self.consumer.assign(tps)
            self._assigned = True
        except KafkaException as exc:
            raise _translate(exc, f"seeking in {self.topic}", self.topic) from exc

    def seek(self, offsets: dict[int, int]) -> None:
        missing = [p for p in self.partitions if p not in offsets]
        starts = {p: low for p, (low, _) in self._watermarks(missing).items()}
        self._go({p: offsets[p] if p in offsets else starts[p] for p in self.partitions})

    def seek_to_end(self) -> None:
        self._go(self.end_offsets())

    def _watermarks(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """(log start, last stable offset) per partition: the client asks with its
        read_committed isolation."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return {
                    p: self.consumer.get_watermark_offsets(
                        TopicPartition(self.topic, p), timeout=self.timeout_s, cached=False
                    )
                    for p in partitions
                }
            except KafkaException as exc:
                # Just after a topic is created (or a leader moves) the broker answers "not
                # leader" for a moment: wait for the metadata to settle, within the timeout.
                if not _transient(exc) or time.monotonic() >= deadline:
                    raise _translate(exc, f"offsets of {self.topic}", self.topic) from exc
                time.sleep(0.1)

    def end_offsets(self) -> dict[int, int]:
        return {p: high for p, (_, high) in self._watermarks(self.partitions).items()}

    def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]:
        wanted = [TopicPartition(self.topic, p, timestamp_ms) for p in self.partitions]
        try:
            found = self.consumer.offsets_for_times(wanted, timeout=self.timeout_s)
        except KafkaException as exc:
            raise _translate(exc, f"offsets by time of {self.topic}", self.topic) from exc
        ends = self.end_offsets()
        return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}

    def positions(self) -> dict[int, int]:
        """The client's position is ahead of ours past transaction markers; it is unset
        (negative) until a record arrives after an assignment."""
        tps = [TopicPartition(self.topic, p) for p in self.partitions]
        try:
            now = {tp.partition: tp.offset for tp in self.consumer.position(tps)}
        except KafkaException as exc:
            raise _translate(exc, f"positions in {self.topic}", self.topic) from exc
        return {p: max(self._next[p], now.get(p, -1)) for p in self.partitions}

    def poll(self, timeout_ms: int = 500, max_records: int = 500) -> list[InRecord]:
        """Waits only for the first record, then takes what has already arrived (librdkafka's
        ``consume`` alone would wait until ``max_records`` or the timeout)."""
        try:
            msgs = self.consumer.consume(1, timeout_ms / 1000)
            if msgs and max_records > 1:
                msgs += self.consumer.consume(max_records - 1, 0)
        except KafkaException as exc:
            raise _translate(exc, f"reading {self.topic}", self.topic) from exc
        out: list[InRecord] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                raise _translate(KafkaException(err), f"reading {self.topic}", self.topic)
            p, offset = m.partition() or 0, m.offset() or 0
            if offset < self._next.get(p, 0):
                continue  # a rewound fetcher's repeat (see _go): handed out already
            self._next[p] = offset + 1
            out.append(
                InRecord(
                    self.topic,
                    p,
                    offset,
                    m.timestamp()[1],
                    m.key(),
                    m.value() or b"",
                    _headers(m),
                )
            )
        out.sort(key=lambda r: (r.partition, r.offset))
        return out

    def close(self) -> None:
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consumer.close()


def _headers(m: Message) -> tuple[Header, ...]:
    # We only ever write (str, bytes) pairs; a None value from another writer reads as b"".
    raw = m.headers()
    if not raw:
        return ()
    pairs = tuple(raw.items() if isinstance(raw, dict) else raw)
    for _, v in pairs:  # per record read: no rebuilding when every value is bytes already
        if type(v) is not bytes:
            return tuple((k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs)
    return cast(tuple[Header, ...], pairs)
