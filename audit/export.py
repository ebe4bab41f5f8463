"""Officer exports: JSONL and CSV rows carrying what offline verification needs."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
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


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
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
