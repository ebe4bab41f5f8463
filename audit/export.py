"""Officer exports: JSONL and CSV rows carrying what offline verification needs.

JSONL: a line ``{"checkpoint", "verifier_key"}`` before the rows proven against it. CSV: the
same two in the last columns of the first row proven against that checkpoint (the signed note
base64-encoded, so it stays on one line), empty on the rows after it. Both are checked by
:func:`audit.offline.verify_export` (``exchange audit verify-export``).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

CSV_COLUMNS = [
    "index",
    "ts",
    "type",
    "actor",
    "department",
    "topic",
    "outcome",
    "data",
    "subjects",
    "entry",
    "leaf_hash",
    "tree_size",
    "proof",
    "checkpoint",  # base64 of the signed note: on the first row proven against it
    "verifier_key",
]
EVENT_COLUMNS = 9  # index .. subjects: what the entry says, shown for people to read


def to_jsonl(note: str, verifier: str, rows: Sequence[dict[str, Any]]) -> Iterator[str]:
    """First line: the signed checkpoint and verifier key; then one event per line."""
    yield json.dumps({"checkpoint": note, "verifier_key": verifier}) + "\n"
    for r in rows:
        yield json.dumps(r, ensure_ascii=False) + "\n"


def event_cells(ev: dict[str, Any]) -> list[str]:
    """The event's columns as text (the offline check compares them with its entry)."""
    return [
        str(ev["index"]),
        str(ev["ts"]),
        str(ev["type"]),
        str(ev["actor"]),
        str(ev["department"] or ""),
        str(ev["topic"] or ""),
        str(ev["outcome"]),
        json.dumps(ev["data"], sort_keys=True),
        " ".join(ev["subjects"]),
    ]


def to_csv(
    rows: Sequence[dict[str, Any]],
    header: bool = True,
    checkpoint: tuple[str, str] | None = None,
) -> str:
    """The rows as CSV text: with the header line unless ``header`` is false (a later page
    of a file), and the ``(note, verifier key)`` they are proven against on the first row."""
    buf = io.StringIO()
    w = csv.writer(buf)
    if header:
        w.writerow(CSV_COLUMNS)
    for n, r in enumerate(rows):
        cp = ["", ""]
        if n == 0 and checkpoint is not None:
            cp = [base64.b64encode(checkpoint[0].encode()).decode(), checkpoint[1]]
        proof = [r["entry"], r["leaf_hash"], r["tree_size"], " ".join(r["proof"])]
        w.writerow([*event_cells(r["event"]), *proof, *cp])
    return buf.getvalue()


def stream_jsonl(note: str, verifier: str, pages: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """A whole export as JSONL, one chunk per page (the checkpoint line first)."""
    yield json.dumps({"checkpoint": note, "verifier_key": verifier}) + "\n"
    for rows in pages:
        yield "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def stream_csv(note: str, verifier: str, pages: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """A whole export as CSV, one chunk per page (the header line first)."""
    yield to_csv([])
    first = True
    for rows in pages:
        yield to_csv(rows, header=False, checkpoint=(note, verifier) if first else None)
        first = False
