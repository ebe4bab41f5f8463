"""The officer's side of the log: checkpoints, proofs, queries, verification and pruning."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from audit import parallel, sources
from audit.checkpoint import Checkpoint, Signer, Verifier
from audit.events import AuditEvent, decode
from audit.history import Link, chain
from audit.keys import SubjectHasher
from audit.merkle import MerkleTree, decompose
from audit.models import AuditCheckpointRow, AuditEventRow, AuditHeadRow, AuditSubjectRow
from audit.queries import Filters, Window, activity, select_activity, select_events, ts_text
from audit.settings import AuditSettings, checkpoint_topic
from audit.store import HEAD_ID, LOG_HEADER, AuditLog
from audit.verify import Report, verify_log
from exchange.db import transaction
from exchange.errors import DependencyUnavailable, ExchangeError, InvalidInput, NotFound
from exchange.kafka.port import KafkaPort, OutRecord

log = logging.getLogger(__name__)

MAX_PAGE = 1000
__all__ = ["MAX_PAGE", "AuditService", "Checkpointer", "Filters", "SignedCheckpoint"]


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str


class AuditService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        log_: AuditLog,
        signer: Signer,
        settings: AuditSettings,
        kafka: KafkaPort | None = None,
    ) -> None:
        self.sessions, self.log, self.signer = sessions, log_, signer
        self.settings, self.kafka = settings, kafka
        self.h = log_.h
        self.subjects: SubjectHasher = log_.subjects
        self._tree: MerkleTree | None = None
        self._tree_lock = threading.Lock()

    # -- tree and checkpoints ----------------------------------------------------------------
    def tree(self, s: Session) -> MerkleTree:
        """The proof tree, synced with the index up to the head this session sees."""
        head = s.get(AuditHeadRow, HEAD_ID)
        if head is None:
            raise DependencyUnavailable("audit log is not initialised")
        with self._tree_lock:
            if self._tree is None or self._tree.offset != head.pruned:
                anchor = [bytes.fromhex(x) for x in head.anchor]
                self._tree = MerkleTree(self.h, head.pruned, anchor)
            tree = self._tree
            if tree.size < head.size:
                rows = s.execute(
                    select(AuditEventRow.idx, AuditEventRow.leaf_hash)
                    .where(AuditEventRow.idx >= tree.size, AuditEventRow.idx < head.size)
                    .order_by(AuditEventRow.idx)
                )
                for idx, leaf in rows:
                    if idx != tree.size:
                        raise DependencyUnavailable(f"audit index has a gap at {tree.size}")
                    tree.append(leaf)
            return tree

    def checkpoint(self) -> SignedCheckpoint:
        """Sign the current head (or return the checkpoint already signed for it)."""
        with transaction(self.sessions) as s:
            tree = self.tree(s)
            size = tree.size
            existing = s.get(AuditCheckpointRow, size)
            if existing is not None:
                return SignedCheckpoint(existing.size, existing.root, existing.note)
            cp = Checkpoint(self.settings.origin, size, tree.root(size), self.h.name)
            note = self.signer.sign(cp)
        try:
            with transaction(self.sessions) as s:
                s.add(AuditCheckpointRow(size=size, root=cp.root, note=note, created_at=_now()))
        except DependencyUnavailable as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise  # else another process signed the same size: same root, keep theirs
            return SignedCheckpoint(size, cp.root, note)
        self._publish(note)
        return SignedCheckpoint(size, cp.root, note)

    def _publish(self, note: str) -> None:
        """Also keep the note in Kafka, so the topic verifies without the database's copy."""
        if self.kafka is None:
            return
        headers = [(LOG_HEADER, self.log.bus.log_id.encode())]
        try:
            self.kafka.send_durably(
                checkpoint_topic(self.settings.topic), OutRecord(None, note.encode(), headers)
            )
        except ExchangeError:  # the database holds it; the next checkpoint tries again
            log.warning("checkpoint not written to Kafka")

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        with transaction(self.sessions) as s:
            row = s.scalars(
                select(AuditCheckpointRow).order_by(AuditCheckpointRow.size.desc()).limit(1)
            ).first()
            return None if row is None else SignedCheckpoint(row.size, row.root, row.note)

    def covering_checkpoint(self, size: int) -> SignedCheckpoint:
        """The latest checkpoint if it covers ``size`` leaves, else a freshly signed one."""
        latest = self.latest_checkpoint()
        if latest is not None and latest.size >= size:
            return latest
        return self.checkpoint()

    def inclusion(self, index: int, size: int) -> dict[str, Any]:
        with transaction(self.sessions) as s:
            tree = self.tree(s)
            if not 0 <= index < size <= tree.size:
                raise NotFound(f"no leaf {index} in a tree of size {size}")
            proof = tree.inclusion_proof(index, size)
            return {
                "index": index,
                "size": size,
                "hash": self.h.name,
                "leaf_hash": tree.leaf(index).hex(),
                "root": tree.root(size).hex(),
                "proof": [p.hex() for p in proof],
            }

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        with transaction(self.sessions) as s:
            tree = self.tree(s)
            if not 0 <= first <= second <= tree.size:
                raise NotFound(f"no consistency proof from {first} to {second}")
            proof = tree.consistency_proof(first, second)
            return {
                "from": first,
                "to": second,
                "hash": self.h.name,
                "first_root": tree.root(first).hex(),
                "second_root": tree.root(second).hex(),
                "proof": [p.hex() for p in proof],
            }

    # -- queries -----------------------------------------------------------------------------
    def query(self, f: Filters, after: int = -1, limit: int = 100) -> list[AuditEvent]:
        """Events matching every given filter, in index order, after index ``after``."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        with transaction(self.sessions) as s:
            q = select_events(f, self.subjects).where(AuditEventRow.idx > after)
            rows = s.scalars(q.limit(limit))
            return [decode(r.entry) for r in rows]

    def with_proofs(
        self, events: list[AuditEvent]
    ) -> tuple[SignedCheckpoint, list[dict[str, Any]]]:
        """Each event with its canonical entry and inclusion proof against one checkpoint."""
        need = max((e.index for e in events), default=-1) + 1
        cp = self.covering_checkpoint(need)
        with transaction(self.sessions) as s:
            tree = self.tree(s)
            out = [self._proven(tree, e, cp.size) for e in events]
        return cp, out

    def export(
        self, f: Filters, after: int = -1, page: int = MAX_PAGE
    ) -> tuple[SignedCheckpoint, Iterator[list[dict[str, Any]]]]:
        """Every matching event after ``after`` — any number — with its proof, in pages of at
        most ``page`` rows (constant memory: each page is read in its own short transaction
        when the caller asks for it). All proofs are against one checkpoint, signed now: the
        export is the log as of that checkpoint, events appended meanwhile are left out."""
        if not 1 <= page <= MAX_PAGE:
            raise InvalidInput(f"page must be between 1 and {MAX_PAGE}")
        cp = self.checkpoint()
        return cp, self._export_pages(f, after, page, cp.size)

    def _export_pages(
        self, f: Filters, after: int, page: int, size: int
    ) -> Iterator[list[dict[str, Any]]]:
        cursor = after
        while True:
            with transaction(self.sessions) as s:
                q = select_events(f, self.subjects).where(
                    AuditEventRow.idx > cursor, AuditEventRow.idx < size
                )
                events = [decode(r.entry) for r in s.scalars(q.limit(page))]
                tree = self.tree(s)
                rows = [self._proven(tree, e, size) for e in events]
            if rows:
                yield rows
            if len(events) < page:
                return
            cursor = events[-1].index

    def _proven(self, tree: MerkleTree, e: AuditEvent, size: int) -> dict[str, Any]:
        return {
            "event": e.to_json(),
            "entry": e.canonical().decode(),
            "leaf_hash": tree.leaf(e.index).hex(),
            "proof": [p.hex() for p in tree.inclusion_proof(e.index, size)],
            "tree_size": size,
        }

    def event(self, index: int) -> tuple[SignedCheckpoint, dict[str, Any]]:
        """One event with its inclusion proof against the latest checkpoint covering it."""
        with transaction(self.sessions) as s:
            row = s.get(AuditEventRow, index)
            if row is None:
                raise NotFound(f"no audit event {index} (never written, or pruned)")
            ev = decode(row.entry)
        cp, rows = self.with_proofs([ev])
        return cp, rows[0]

    def activity(self, w: Window, department: str | None = None) -> dict[str, Any]:
        """Events and denials per department per time bucket."""
        with transaction(self.sessions) as s:
            rows = [tuple(r) for r in s.execute(select_activity(w, department))]
        return activity(w, rows)

    def checkpoint_history(self, limit: int = 50, before: int | None = None) -> list[Link]:
        """Signed checkpoints, newest first, each checked against its predecessor."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        with transaction(self.sessions) as s:
            q = select(AuditCheckpointRow).order_by(AuditCheckpointRow.size.desc())
            if before is not None:
                q = q.where(AuditCheckpointRow.size < before)
            rows = list(s.scalars(q.limit(limit + 1)))
            notes = [(r.size, r.note, r.created_at) for r in rows]
            tree = self.tree(s)
            return chain(notes, self.signer.verifier, self.h, tree.consistency_proof)[:limit]

    # -- verification and retention ------------------------------------------------------------
    def verify(
        self,
        source: str = "db",
        trusted: list[str] | None = None,
        verifier: Verifier | None = None,
        labels: dict[int, str] | None = None,
    ) -> Report:
        size, anchor = sources.head(self.sessions)
        notes = sources.checkpoint_notes(self.sessions)
        if source == "db":
            intact = parallel.verify_db(
                self.sessions,
                self.h.name,
                size,
                anchor,
                checkpoints=notes,
                verifier=verifier or self.signer.verifier,
                origin=self.settings.origin,
                trusted=trusted or [],
                labels=labels,
            )
            if intact is not None:
                return intact
            entries = sources.db_entries(self.sessions)
            expected: int | None = size
        elif source == "kafka":
            if self.kafka is None:
                raise InvalidInput("no Kafka configured to verify against")
            log_id = self.log.bus.log_id
            notes = notes + sources.kafka_checkpoints(self.kafka, self.settings.topic, log_id)
            entries = sources.skip_pruned(
                sources.kafka_entries(self.kafka, self.settings.topic, log_id), anchor
            )
            expected = None  # the index may lag Kafka; checkpoints bound truncation
        else:
            raise InvalidInput("source must be db or kafka")
        return verify_log(
            self.h,
            entries,
            checkpoints=notes,
            verifier=verifier or self.signer.verifier,
            origin=self.settings.origin,
            anchor=anchor,
            expected_size=expected,
            trusted=trusted or [],
            labels=labels,
        )

    def prune(self, now: datetime | None = None) -> int:
        """Drop indexed events older than the retention, never past the latest checkpoint.

        Keeps every checkpoint and the compact range of the pruned prefix, so the remaining
        events still reproduce every later checkpoint's root. Returns the new first index.
        """
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.settings.retention_days)
        latest = self.latest_checkpoint()
        if latest is None:
            return 0
        with transaction(self.sessions) as s:
            tree = self.tree(s)
            old = s.scalars(
                select(AuditEventRow.idx)
                .where(AuditEventRow.ts < ts_text(cutoff), AuditEventRow.idx < latest.size)
                .order_by(AuditEventRow.idx.desc())
                .limit(1)
            ).first()
            head = s.get(AuditHeadRow, HEAD_ID, with_for_update=True)
            assert head is not None
            if old is None or old + 1 <= head.pruned:
                return head.pruned
            p = old + 1
            head.anchor = [tree.subtree(a, b).hex() for a, b in decompose(p)]
            head.anchor_last = tree.leaf(p - 1).hex()
            head.pruned = p
            s.execute(delete(AuditSubjectRow).where(AuditSubjectRow.idx < p))
            s.execute(delete(AuditEventRow).where(AuditEventRow.idx < p))
        with self._tree_lock:
            self._tree = None
        return p


class Checkpointer:
    """Signs a checkpoint every ``interval`` seconds while the log grows, and applies the
    retention once a day (after signing, so pruning never outruns the checkpoints)."""

    PRUNE_EVERY_S = 24 * 3600.0

    def __init__(self, service: AuditService, interval: float) -> None:
        self.service, self.interval = service, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-checkpointer", daemon=True)
        self._pruned_at: float | None = None

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.service.checkpoint()
                now = time.monotonic()
                if self._pruned_at is None or now - self._pruned_at >= self.PRUNE_EVERY_S:
                    self.service.prune()
                    self._pruned_at = now
            except Exception:  # keep trying later; the failure is logged, not fatal
                log.warning("audit checkpoint or pruning failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _now() -> str:
    return ts_text(datetime.now(UTC))
