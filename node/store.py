"""The node's durable state in one SQLite database (WAL): outbox, batches, dead letters,
prefetched inbox, cursors and counters.

- A local publish is one transaction: all its records (and its Idempotency-Key answer) are
  stored, or none and the caller is told why (:class:`node.errors.OutboxFull` when the disk or
  the configured quota is full). Stored means fsynced (``synchronous=FULL``).
- The forwarder *seals* the next batch before sending it: a contiguous run of outbox records
  of one topic and format, its id fixed in the database. Its Idempotency-Key derives from the
  node id and that batch id, so a retry after a cut or a crash sends the very same request.
- Everything is read in bounded pages: memory does not grow with the backlog.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.errors import Conflict, DependencyUnavailable
from node.atrest import AtRest, Plain
from node.errors import OutboxFull

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL, kind TEXT NOT NULL, version TEXT NOT NULL,
  payload BLOB NOT NULL, size INTEGER NOT NULL, received_at REAL NOT NULL, app TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL, kind TEXT NOT NULL, version TEXT NOT NULL,
  first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, records INTEGER NOT NULL,
  created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead (
  seq INTEGER PRIMARY KEY, batch INTEGER NOT NULL, topic TEXT NOT NULL, kind TEXT NOT NULL,
  version TEXT NOT NULL, payload BLOB NOT NULL, received_at REAL NOT NULL, app TEXT NOT NULL,
  status INTEGER NOT NULL, error TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS local_keys (
  app TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, answer TEXT NOT NULL,
  at REAL NOT NULL, PRIMARY KEY (app, key));
CREATE TABLE IF NOT EXISTS inbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, sub TEXT NOT NULL, record BLOB NOT NULL,
  fetched_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS inbox_sub ON inbox (sub, seq);
CREATE TABLE IF NOT EXISTS cursors (
  sub TEXT PRIMARY KEY, upstream TEXT, committed INTEGER NOT NULL DEFAULT 0);
"""
_PAGE = 4096  # SQLite page size the quota is counted in
LOCAL_KEY_TTL_S = 24 * 3600


@dataclass(frozen=True)
class Batch:
    id: int
    topic: str
    kind: str  # "json" | "avro"
    version: str  # schema_version as JSON text ("\"latest\"" or "3"); unused for avro
    first_seq: int
    last_seq: int
    records: int


@dataclass(frozen=True)
class Backlog:
    records: int
    bytes: int
    oldest_received_at: float | None
    batches: int
    dead: int


class Store:
    def __init__(self, path: Path, *, max_bytes: int, at_rest: AtRest | None = None) -> None:
        self.path = path
        # Local publishes stop at the quota; the node's own writes (sealing a batch, counters,
        # prefetched pages) may go a little beyond, so a full outbox can still drain.
        self.soft_pages = max(16, max_bytes // _PAGE)
        self.hard_pages = self.soft_pages + max(64, self.soft_pages // 10)
        self.at_rest = at_rest or Plain()
        self._local = threading.local()
        self.arrived = threading.Condition()  # notified when inbox records arrive
        db = self._db()
        db.execute(f"PRAGMA max_page_count={self.hard_pages}")
        db.executescript(_SCHEMA)

    # -- connections ---------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            db.execute(f"PRAGMA page_size={_PAGE}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _write(self, *, quota: bool = False) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            db.execute(f"PRAGMA max_page_count={self.soft_pages if quota else self.hard_pages}")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back itself (disk full)
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            raise _translate(exc) from exc

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- local publish -------------------------------------------------------------------

    def append(
        self,
        app: str,
        topic: str,
        kind: str,
        version: str,
        payloads: Sequence[bytes],
        *,
        idempotency_key: str | None,
        request_hash: str,
        node_id: str,
    ) -> tuple[dict[str, Any], bool]:
        """Store a local publish; with a key, a retry gets the first answer (replayed=True)."""
        now = time.time()
        with self._write(quota=True) as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT request_hash, answer FROM local_keys WHERE app=? AND key=?",
                    (app, idempotency_key),
                ).fetchone()
                if row is not None:
                    if row[0] != request_hash:
                        raise Conflict("Idempotency-Key was used with a different request")
                    return dict(json.loads(row[1])), True
            first = None
            for payload in payloads:
                cur = db.execute(
                    "INSERT INTO outbox (topic, kind, version, payload, size, received_at, app) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (topic, kind, version, self.at_rest.seal(payload, topic), len(payload),
                     now, app),
                )
                first = first if first is not None else cur.lastrowid
            answer = {
                "topic": topic,
                "status": "queued",
                "records": len(payloads),
                "first_sequence": first,
                "node": node_id,
            }
            if idempotency_key is not None:
                db.execute("DELETE FROM local_keys WHERE at < ?", (now - LOCAL_KEY_TTL_S,))
                db.execute(
                    "INSERT INTO local_keys VALUES (?,?,?,?,?)",
                    (app, idempotency_key, request_hash, json.dumps(answer), now),
                )
        return answer, False

    # -- forwarding ----------------------------------------------------------------------

    def next_batch(self, max_records: int, max_bytes: int) -> Batch | None:
        """The batch being forwarded, or a new one sealed from the head of the outbox."""
        with self._write() as db:
            row = db.execute(
                "SELECT id, topic, kind, version, first_seq, last_seq, records FROM batches "
                "ORDER BY id LIMIT 1"
            ).fetchone()
            if row is not None:
                return Batch(*row)
            rows = db.execute(
                "SELECT seq, topic, kind, version, size FROM outbox ORDER BY seq LIMIT ?",
                (max_records,),
            ).fetchall()
            if not rows:
                return None
            _, topic, kind, version, _ = rows[0]
            last, count, size = rows[0][0], 0, 0
            for seq, t, k, v, n in rows:
                if (t, k, v) != (topic, kind, version) or (count and size + n > max_bytes):
                    break
                last, count, size = seq, count + 1, size + n
            cur = db.execute(
                "INSERT INTO batches (topic, kind, version, first_seq, last_seq, records, "
                "created_at) VALUES (?,?,?,?,?,?,?)",
                (topic, kind, version, rows[0][0], last, count, time.time()),
            )
            assert cur.lastrowid is not None
            return Batch(cur.lastrowid, topic, kind, version, rows[0][0], last, count)

    def payloads(self, batch: Batch) -> list[bytes]:
        rows = self._db().execute(
            "SELECT payload FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (batch.first_seq, batch.last_seq),
        ).fetchall()
        return [self.at_rest.open(r[0], batch.topic) for r in rows]

    def delivered(self, batch: Batch, *, replayed: bool) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (batch.first_seq, batch.last_seq)
            )
            db.execute("DELETE FROM batches WHERE id=?", (batch.id,))
            self._bump(db, "forwarded_records", batch.records)
            self._bump(db, "forwarded_batches", 1)
            if replayed:
                self._bump(db, "replayed_batches", 1)

    def rejected(self, batch: Batch, status: int, error: str) -> None:
        """The site refused the batch for good (invalid records, no such topic...): its
        records move to the dead letters, kept for the operator, and forwarding goes on."""
        with self._write() as db:
            db.execute(
                "INSERT INTO dead SELECT seq, ?, topic, kind, version, payload, received_at, app,"
                " ?, ?, ? FROM outbox WHERE seq BETWEEN ? AND ?",
                (batch.id, status, error[:2000], time.time(), batch.first_seq, batch.last_seq),
            )
            db.execute(
                "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (batch.first_seq, batch.last_seq)
            )
            db.execute("DELETE FROM batches WHERE id=?", (batch.id,))
            self._bump(db, "rejected_records", batch.records)

    def rejected_records(self, batch: Batch, indexes: set[int], status: int, error: str) -> None:
        """The site refused these records of the batch (and so published none of it): they
        go to the dead letters; the rest goes back to the outbox head, to be sealed again
        into a new batch (new id, new Idempotency-Key: the refused request wrote nothing)."""
        with self._write() as db:
            seqs = [
                r[0]
                for r in db.execute(
                    "SELECT seq FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq",
                    (batch.first_seq, batch.last_seq),
                ).fetchall()
            ]
            dead = [seq for i, seq in enumerate(seqs) if i in indexes]
            for seq in dead:
                db.execute(
                    "INSERT INTO dead SELECT seq, ?, topic, kind, version, payload, received_at,"
                    " app, ?, ?, ? FROM outbox WHERE seq=?",
                    (batch.id, status, error[:2000], time.time(), seq),
                )
                db.execute("DELETE FROM outbox WHERE seq=?", (seq,))
            db.execute("DELETE FROM batches WHERE id=?", (batch.id,))
            self._bump(db, "rejected_records", len(dead))

    # -- prefetched subscriptions --------------------------------------------------------

    def upstream_cursor(self, sub: str) -> str | None:
        row = self._db().execute("SELECT upstream FROM cursors WHERE sub=?", (sub,)).fetchone()
        return None if row is None else row[0]

    def inbox_backlog(self, sub: str) -> int:
        committed = self.committed(sub)
        row = self._db().execute(
            "SELECT count(*) FROM inbox WHERE sub=? AND seq>?", (sub, committed)
        ).fetchone()
        return int(row[0])

    def prefetched(self, sub: str, records: Sequence[dict[str, Any]], upstream: str) -> None:
        """Store a page pulled from the site with the cursor after it, atomically."""
        now = time.time()
        with self._write() as db:
            for r in records:
                blob = self.at_rest.seal(json.dumps(r, separators=(",", ":")).encode(), sub)
                db.execute(
                    "INSERT INTO inbox (sub, record, fetched_at) VALUES (?,?,?)", (sub, blob, now)
                )
            db.execute(
                "INSERT INTO cursors (sub, upstream) VALUES (?, ?) "
                "ON CONFLICT (sub) DO UPDATE SET upstream=excluded.upstream",
                (sub, upstream),
            )
            self._bump(db, f"prefetched_records:{sub}", len(records))
        if records:
            with self.arrived:
                self.arrived.notify_all()

    def committed(self, sub: str) -> int:
        row = self._db().execute("SELECT committed FROM cursors WHERE sub=?", (sub,)).fetchone()
        return 0 if row is None else int(row[0])

    def page(self, sub: str, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        rows = self._db().execute(
            "SELECT seq, record FROM inbox WHERE sub=? AND seq>? ORDER BY seq LIMIT ?",
            (sub, after, limit),
        ).fetchall()
        return [(seq, json.loads(self.at_rest.open(blob, sub))) for seq, blob in rows]

    def commit(self, sub: str, seq: int) -> None:
        """A local consumer's cursor; what it has consumed is deleted (disk stays bounded)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO cursors (sub, committed) VALUES (?, ?) "
                "ON CONFLICT (sub) DO UPDATE SET committed=max(committed, excluded.committed)",
                (sub, seq),
            )
            db.execute("DELETE FROM inbox WHERE sub=? AND seq<=?", (sub, seq))

    def last_seq(self, sub: str) -> int:
        row = self._db().execute(
            "SELECT max(seq) FROM inbox WHERE sub=?", (sub,)
        ).fetchone()
        return max(int(row[0] or 0), self.committed(sub))

    # -- status --------------------------------------------------------------------------

    def backlog(self) -> Backlog:
        db = self._db()
        count, size, oldest = db.execute(
            "SELECT count(*), coalesce(sum(size), 0), min(received_at) FROM outbox"
        ).fetchone()
        batches = db.execute("SELECT count(*) FROM batches").fetchone()[0]
        dead = db.execute("SELECT count(*) FROM dead").fetchone()[0]
        return Backlog(int(count), int(size), oldest, int(batches), int(dead))

    def set_meta(self, **values: Any) -> None:
        with self._write() as db:
            for k, v in values.items():
                db.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v=excluded.v",
                    (k, json.dumps(v)),
                )

    def meta(self) -> dict[str, Any]:
        rows = self._db().execute("SELECT k, v FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db().execute(
            "SELECT seq, batch, topic, status, error, received_at, app FROM dead "
            "ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ("sequence", "batch", "topic", "status", "error", "received_at", "app")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    @staticmethod
    def _bump(db: sqlite3.Connection, key: str, n: int) -> None:
        db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v=CAST(v AS INTEGER)+?",
            (key, str(n), n),
        )


def _translate(exc: sqlite3.OperationalError) -> Exception:
    text = str(exc).lower()
    if "full" in text:  # SQLITE_FULL: the disk, or the max_page_count quota
        return OutboxFull("the node's outbox is full; nothing was stored, retry later")
    return DependencyUnavailable("the node's outbox is unavailable", code="outbox_unavailable")
