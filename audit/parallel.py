"""Verify a big indexed log on two cores.

The one-pass walk (:func:`audit.verify.verify_log`) spends nearly all its time on each entry
alone: reading its row, parsing it, hashing it, comparing it with its columns. So a child
process checks the first half of the index while this process checks the second
(:func:`audit.verify.check_span`), and the halves are joined here: the second half's first
link must name the first half's last leaf, the indexes must run on without a gap, and every
signed checkpoint's root must come out of the joined leaves (:func:`audit.verify.verify_spans`).

This only ever says "intact". If anything is off — a failed check, halves that do not join,
a child that could not run — it returns None and the caller runs the one-pass walk, which
alone names the first bad index and how it was changed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from audit.checkpoint import Verifier
from audit.merkle import hasher
from audit.sources import db_entries
from audit.verify import Anchor, Report, Span, check_span, verify_spans
from exchange.db import make_engine, session_factory

log = logging.getLogger(__name__)

PARALLEL_MIN = 200_000  # below this, starting a Python process costs more than it saves


def verify_db(
    sessions: sessionmaker[Session],
    hash_name: str,
    size: int,
    anchor: Anchor | None,
    *,
    checkpoints: Sequence[str],
    verifier: Verifier,
    origin: str | None,
    trusted: Sequence[str],
    labels: Mapping[int, str] | None,
) -> Report | None:
    """The report of an intact log of ``size`` indexed events, checked in two halves; None
    when the log is small, cannot be shared with a child, or is not intact."""
    start = anchor.size if anchor else 0
    url = _url(sessions)
    if url is None or size - start < PARALLEL_MIN or not spare_core():
        return None
    mid = start + (size - start) // 2
    h = hasher(hash_name)
    try:
        with _FirstHalf(url, hash_name, start, mid) as child:
            second = check_span(h, db_entries(sessions, after=mid - 1), mid)
            spans = [child.result(len(h.empty())), second]
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        # The one-pass walk still runs: nothing is lost but time.
        log.warning("parallel audit verification did not run: %s", type(exc).__name__)
        return None
    return verify_spans(
        h,
        spans,
        checkpoints=checkpoints,
        verifier=verifier,
        origin=origin,
        anchor=anchor,
        expected_size=size,
        trusted=trusted,
        labels=labels,
    )


def spare_core() -> bool:
    """Whether a second process would get a core of its own: the load average, which counts
    this busy process too, is below the cores plus one. On 2 cores, 1,000,000 events took
    15.6 s in halves against 19.5 s in one pass at load 2, but 36 s against 30 s at load 5-6,
    where the child's start-up and the join are pure cost."""
    cores = os.cpu_count() or 1
    return cores >= 2 and os.getloadavg()[0] < cores + 1


class _FirstHalf:
    """``python -m audit.parallel`` checking the first half: a fresh interpreter (not a fork
    of this one, whose Kafka client and server run threads; not multiprocessing's spawn,
    which re-imports the caller's main module). The database URL, which may carry a
    password, goes through its stdin; its answer comes back on stdout."""

    def __init__(self, url: str, hash_name: str, start: int, before: int) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, hash_name, str(start), str(before)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(url.encode())
        self.proc.stdin.close()

    def __enter__(self) -> _FirstHalf:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def result(self, digest_size: int) -> Span:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        if self.proc.wait() != 0:
            raise subprocess.SubprocessError(f"exit {self.proc.returncode}")
        head, _, blob = out.partition(b"\n")
        meta = json.loads(head)
        if len(blob) % digest_size:
            raise ValueError("truncated answer")
        leaves = [blob[i : i + digest_size] for i in range(0, len(blob), digest_size)]
        return Span(int(meta["base"]), leaves, meta["first_prev"], bool(meta["ok"]))


def first_half(url: str, hash_name: str, start: int, before: int) -> Span:
    """Every indexed row below ``before``, checked from leaf ``start`` on (rows below
    ``start``, which a pruned index must not hold, fail the check as they should)."""
    engine = make_engine(url)
    try:
        entries = db_entries(session_factory(engine), before=before)
        return check_span(hasher(hash_name), entries, start)
    finally:
        engine.dispose()


def _child(args: list[str]) -> None:
    hash_name, start, before = args[0], int(args[1]), int(args[2])
    span = first_half(sys.stdin.read(), hash_name, start, before)
    meta = {"base": span.base, "first_prev": span.first_prev, "ok": span.ok}
    sys.stdout.buffer.write(json.dumps(meta).encode() + b"\n" + b"".join(span.leaves))
    sys.stdout.buffer.flush()


def _url(sessions: sessionmaker[Session]) -> str | None:
    engine = sessions.kw.get("bind")
    if not isinstance(engine, Engine):
        return None
    if engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return None  # a private in-memory database: a child could not open it
    return engine.url.render_as_string(hide_password=False)


if __name__ == "__main__":
    _child(sys.argv[1:])
