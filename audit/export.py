"""Officer exports: JSONL and CSV rows carrying what offline verification needs."""

from __future__ import annotations

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
]


def to_jsonl(note: str, verifier: str, rows: Sequence[dict[str, Any]]) -> Iterator[str]:
    """First line: the signed checkpoint and verifier key; then one event per line."""
    yield json.dumps({"checkpoint": note, "verifier_key": verifier}) + "\n"
    for r in rows:
        yield json.dumps(r, ensure_ascii=False) + "\n"


def to_csv(rows: Sequence[dict[str, Any]], header: bool = True) -> str:
    """The rows as CSV text (with the header line unless ``header`` is false: a later page
    of a streamed file)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    if header:
        w.writerow(CSV_COLUMNS)
    for r in rows:
        ev = r["event"]
        w.writerow(
            [
                ev["index"],
                ev["ts"],
                ev["type"],
                ev["actor"],
                ev["department"] or "",
                ev["topic"] or "",
                ev["outcome"],
                json.dumps(ev["data"], sort_keys=True),
                " ".join(ev["subjects"]),
                r["entry"],
                r["leaf_hash"],
                r["tree_size"],
                " ".join(r["proof"]),
            ]
        )
    return buf.getvalue()


def stream_jsonl(note: str, verifier: str, pages: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """A whole export as JSONL, one chunk per page (the checkpoint line first)."""
    yield json.dumps({"checkpoint": note, "verifier_key": verifier}) + "\n"
    for rows in pages:
        yield "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def stream_csv(pages: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """A whole export as CSV, one chunk per page (the header line first)."""
    yield to_csv([])
    for rows in pages:
        yield to_csv(rows, header=False)
