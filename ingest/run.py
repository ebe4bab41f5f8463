"""Publishing an import: batches with deterministic idempotency keys, in order, checkpointed.

Rows are read once, streamed: at most ``2 * workers`` batches are held at a time, so memory
does not grow with the file. Batches are sent by ``workers`` threads but confirmed in order;
after each confirmed batch its rejects are appended to the reject file and the checkpoint is
rewritten. A batch's key is a digest of the import's identity, its position in the source and
its bytes, so the rerun of an interrupted import sends the unconfirmed batches again under the
same keys and the gateway answers them without publishing twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.api import GatewayApi, Published
from ingest.checkpoint import Checkpoint, decode_watermark, encode_watermark
from ingest.convert import BadValue, Encoder
from ingest.errors import ImportFailed
from ingest.mapping import Mapping
from ingest.sources import Source

MAX_BATCH = 5000  # the gateway's default EXCHANGE_MAX_BATCH_RECORDS


@dataclass
class Batch:
    first: str  # position of the first row (ordinal, or order value for SQL)
    last: str
    rows: int = 0  # rows read, good and bad
    numbers: list[int] = field(default_factory=list)  # row number of each frame
    frames: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)
    watermark: Any = None  # order value of the last row (SQL incremental)

    def body(self, skip: frozenset[int] = frozenset()) -> bytes:
        out = io.BytesIO()
        for i, (key, value) in enumerate(self.frames):
            if i in skip:
                continue
            out.write(b"\xff\xff\xff\xff" if key is None else len(key).to_bytes(4, "big") + key)
            out.write(len(value).to_bytes(4, "big") + value)
        return out.getvalue()


@dataclass
class Summary:
    source: str
    topic: str
    read: int = 0
    published: int = 0
    rejected: int = 0
    resumed_after: int = 0  # rows a previous run had done
    replayed_batches: int = 0  # batches the gateway had already taken (resumed import)
    seconds: float = 0.0
    already_done: bool = False
    checkpoint: str = ""
    reject_file: str = ""

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "topic": self.topic,
            "rows_read": self.read,
            "published": self.published,
            "rejected": self.rejected,
            "resumed_after_rows": self.resumed_after,
            "replayed_batches": self.replayed_batches,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rate, 1),
            "already_done": self.already_done,
            "checkpoint": self.checkpoint,
            "reject_file": self.reject_file,
        }


Progress = Callable[[Summary], None]


class Importer:
    def __init__(
        self,
        api: GatewayApi,
        source: Source,
        mapping: Mapping,
        schema_id: int,
        *,
        checkpoint: Path,
        reject_file: Path,
        batch_size: int = 1000,
        workers: int = 4,
        restart: bool = False,
        on_progress: Progress | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ImportFailed(f"--batch-size must be between 1 and {MAX_BATCH}")
        self.api, self.source, self.mapping = api, source, mapping
        self.topic = mapping.topic
        self.encoder = Encoder(mapping, source.columns, schema_id)
        self.checkpoint_path, self.reject_path = checkpoint, reject_file
        self.batch_size = batch_size
        # An incremental SQL sync sends one batch at a time: its batches are formed from a
        # live table, so only the unconfirmed one may need to be formed again.
        self.workers = 1 if source.order_column else max(1, workers)
        self.restart = restart
        self.on_progress = on_progress or (lambda s: None)
        self.identity = hashlib.sha256(f"{self.topic}\0{source.fingerprint()}".encode()).hexdigest()
        self.mapping_digest = f"{mapping.digest()}:{schema_id}"

    # -- checkpoint ------------------------------------------------------------------------
    def _start(self) -> Checkpoint:
        cp = None if self.restart else Checkpoint.load(self.checkpoint_path)
        if cp is not None and cp.identity != self.identity:
            raise ImportFailed(
                f"checkpoint {self.checkpoint_path} is for another import "
                f"({cp.source} → {cp.topic}; the file changed since?): pass --restart to "
                "import this source from its first row"
            )
        if cp is not None and not cp.complete and cp.extra.get("mapping") != self.mapping_digest:
            raise ImportFailed(
                f"checkpoint {self.checkpoint_path} is of an interrupted import with another "
                "mapping or schema: finish it with the same mapping, or pass --restart"
            )
        if cp is None:
            cp = Checkpoint(self.identity, self.topic, self.source.description)
        cp.extra["mapping"] = self.mapping_digest
        return cp

    def run(self) -> Summary:
        cp = self._start()
        summary = Summary(
            self.source.description,
            self.topic,
            resumed_after=cp.ordinal,
            checkpoint=str(self.checkpoint_path),
            reject_file=str(self.reject_path),
        )
        if cp.complete and self.source.order_column is None:
            summary.already_done = True
            return summary
        cp.complete = False
        started = time.monotonic()
        rejects = self._open_rejects(cp)
        try:
            self._pump(cp, summary, rejects, started)
        finally:
            rejects.close()
            summary.seconds = time.monotonic() - started
        cp.complete = True
        cp.save(self.checkpoint_path)
        if cp.rejected == 0 and self.reject_path.exists() and cp.reject_bytes <= _HEADER_LEN:
            self.reject_path.unlink()
            summary.reject_file = ""
        return summary

    def _open_rejects(self, cp: Checkpoint) -> Any:
        path = self.reject_path
        f = path.open("r+b" if path.exists() else "w+b")
        f.truncate(cp.reject_bytes)  # rows a crashed run rejected after its checkpoint
        f.seek(cp.reject_bytes)
        if cp.reject_bytes == 0:
            f.write(_HEADER)
        return f

    # -- the pipeline ----------------------------------------------------------------------
    def _pump(self, cp: Checkpoint, summary: Summary, rejects: Any, started: float) -> None:
        window: deque[tuple[Batch, Future[Published]]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="import") as pool:
            try:
                for batch in self._batches(cp):
                    window.append((batch, pool.submit(self._send, batch)))
                    while window and (len(window) > 2 * self.workers or window[0][1].done()):
                        self._confirm(*window.popleft(), cp, summary, rejects)
                while window:
                    self._confirm(*window.popleft(), cp, summary, rejects)
            except BaseException:
                for _, fut in window:
                    fut.cancel()
                raise

    def _batches(self, cp: Checkpoint) -> Iterator[Batch]:
        src = self.source
        order = src.columns.index(src.order_column) if src.order_column else None
        after = 0 if order is not None else cp.ordinal
        rows = src.rows(after=after, watermark=decode_watermark(cp.watermark))
        batch: Batch | None = None
        for row in rows:
            pos = str(row.ordinal) if order is None else _position(row.values, order)
            value = row.values[order] if order is not None and row.values else None
            if batch is not None and self._full(batch) and self._may_cut(batch, value, order):
                yield batch
                batch = None
            if batch is None:
                batch = Batch(first=pos, last=pos)
            batch.last, batch.rows = pos, batch.rows + 1
            if order is not None:
                batch.watermark = value
            if row.problem is not None or row.values is None:
                batch.rejects.append((row.number, row.problem or "unreadable"))
                continue
            try:
                batch.frames.append(self.encoder.encode(row.values))
                batch.numbers.append(row.number)
            except BadValue as exc:
                batch.rejects.append((row.number, str(exc)))
        if batch is not None:
            yield batch

    @staticmethod
    def _may_cut(batch: Batch, value: Any, order: int | None) -> bool:
        # Rows sharing an order value stay in one batch: the checkpoint's watermark then
        # never falls inside a run of equal values (up to the gateway's batch limit).
        return order is None or value != batch.watermark or len(batch.frames) >= MAX_BATCH

    def _full(self, batch: Batch) -> bool:
        return len(batch.frames) >= self.batch_size or len(batch.rejects) >= self.batch_size

    def _key(self, batch: Batch, body: bytes) -> str:
        digest = hashlib.sha256(body).hexdigest()
        basis = f"{self.identity}\0{batch.first}\0{batch.last}\0{digest}"
        return "import-" + hashlib.sha256(basis.encode()).hexdigest()[:48]

    def _send(self, batch: Batch) -> Published:
        if not batch.frames:
            return Published(0, False, [])
        skip: frozenset[int] = frozenset()
        refused: list[tuple[int, str]] = []
        while True:
            body = batch.body(skip)
            if not body:
                return Published(0, False, refused)
            got = self.api.publish(self.topic, body, self._key(batch, body))
            if not got.rejected:
                return Published(got.count, got.replayed, refused)
            # The gateway refused some records (nothing was written): drop them, send the
            # rest as a new body (hence a new key), report each with the gateway's reason.
            alive = [i for i in range(len(batch.frames)) if i not in skip]
            for index, reason in got.rejected:
                if 0 <= index < len(alive):
                    refused.append((alive[index], f"refused by the gateway: {reason}"))
            skip = skip | {i for i, _ in refused}

    def _confirm(
        self,
        batch: Batch,
        fut: Future[Published],
        cp: Checkpoint,
        summary: Summary,
        rejects: Any,
    ) -> None:
        got = fut.result()
        bad = batch.rejects + [(batch.numbers[i], why) for i, why in got.rejected]
        if bad:
            text = io.StringIO()
            w = csv.writer(text)
            for number, reason in sorted(bad):
                w.writerow([number, reason])
            rejects.write(text.getvalue().encode())
            rejects.flush()
        cp.reject_bytes = rejects.tell()
        cp.ordinal += batch.rows
        cp.batches += 1
        cp.published += got.count
        cp.rejected += len(bad)
        if batch.watermark is not None:
            cp.watermark = encode_watermark(batch.watermark)
        cp.save(self.checkpoint_path)
        summary.read += batch.rows
        summary.published += got.count
        summary.rejected += len(bad)
        summary.replayed_batches += int(got.replayed)
        self.on_progress(summary)


_HEADER = b"row,reason\n"
_HEADER_LEN = len(_HEADER)


def _position(values: Any, order: int) -> str:
    if values is None:
        return "?"
    return repr(encode_watermark(values[order]))
