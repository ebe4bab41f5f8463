"""Offline checks an officer runs on an export: no database, no gateway, no network."""

from __future__ import annotations

import base64
import csv
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from audit.checkpoint import BadCheckpoint, Checkpoint, Verifier, open_note
from audit.events import BadEvent, canonical_json, decode
from audit.export import CSV_COLUMNS, EVENT_COLUMNS, event_cells
from audit.merkle import hasher, verify_inclusion


def verify_exported(entry: str, index: int, proof_hex: list[str], note: str, key: str) -> bool:
    """True if ``entry`` is leaf ``index`` of the tree the signed ``note`` commits to."""
    cp = open_note(note, Verifier.parse(key))
    h = hasher(cp.hash)
    proof = [bytes.fromhex(p) for p in proof_hex]
    return verify_inclusion(h, index, cp.size, h.leaf(entry.encode()), proof, cp.root)


@dataclass
class ExportReport:
    """The verdict on an exported JSONL file (``exchange audit export``/``query -o jsonl``)."""

    ok: bool
    events: int = 0
    checkpoints: int = 0
    index: int | None = None  # the event (or None: the file) where a check failed
    detail: str = ""
    sizes: list[int] = field(default_factory=list)

    def line(self) -> str:
        if self.ok:
            return (
                f"ok: {self.events} events, each proven included in a signed checkpoint "
                f"({self.checkpoints} checkpoint(s), tree size {max(self.sizes, default=0)})"
            )
        where = f"event {self.index}" if self.index is not None else "file"
        return f"FAILED at {where}: {self.detail}"


class _Bad(Exception):
    def __init__(self, index: int | None, detail: str) -> None:
        super().__init__(detail)
        self.index, self.detail = index, detail


def verify_export(
    lines: Iterable[str], key: str | None = None, on_event: Callable[[], None] | None = None
) -> ExportReport:
    """Check every event row against the signed checkpoint line before it: the row's entry is
    the canonical form of its event, and its inclusion proof leads to the signed root.

    ``key`` pins the verifier key; without it the key written in the file is trusted (say so).
    Rows may follow several checkpoints (an export spanning a new one adds a line). A CSV
    export (:data:`audit.export.CSV_COLUMNS`) is checked the same way, and its readable
    columns must say what its signed entry says."""
    report = ExportReport(ok=True)
    cp: Checkpoint | None = None
    try:
        for n, row in _rows(iter(lines)):
            if "checkpoint" in row:
                cp = _checkpoint(row, key, n)
                report.checkpoints += 1
                report.sizes.append(cp.size)
            elif "event" in row:
                if cp is None:
                    raise _Bad(None, f"line {n}: an event before any signed checkpoint line")
                _event(row, cp, n)
                report.events += 1
                if on_event is not None:
                    on_event()
            else:
                raise _Bad(None, f"line {n}: neither a checkpoint nor an event")
    except _Bad as bad:
        report.ok, report.index, report.detail = False, bad.index, bad.detail
    if report.ok and report.checkpoints == 0:
        report.ok, report.detail = False, "no signed checkpoint in the file"
    return report


def _rows(lines: Iterator[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a JSONL or CSV export, as JSONL rows."""
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        return
    if first.startswith(CSV_COLUMNS[0] + ","):
        yield from _csv_rows(first, lines)
        return
    for n, raw in enumerate(itertools.chain([first], lines), 1):
        if raw.strip():
            yield n, _row(raw, n)


def _csv_rows(header: str, lines: Iterator[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    if next(csv.reader([header])) != CSV_COLUMNS:
        raise _Bad(None, "line 1: not the header of an audit export")
    for n, cells in enumerate(csv.reader(line for line in lines if line.strip()), 2):
        if len(cells) != len(CSV_COLUMNS):
            raise _Bad(None, f"line {n}: {len(cells)} columns, not {len(CSV_COLUMNS)}")
        entry, _, size, proof, note_b64, key = cells[EVENT_COLUMNS:]
        if note_b64:
            try:
                note = base64.b64decode(note_b64, validate=True).decode()
            except ValueError:
                raise _Bad(None, f"line {n}: the checkpoint is not base64") from None
            yield n, {"checkpoint": note, "verifier_key": key}
        try:
            event = decode(entry.encode()).to_json()
        except BadEvent:
            raise _Bad(None, f"line {n}: malformed event row") from None
        if event_cells(event) != cells[:EVENT_COLUMNS]:
            raise _Bad(
                event["index"], "the row differs from its signed entry (edited after export)"
            )
        yield n, {"event": event, "entry": entry, "tree_size": size, "proof": proof.split()}


def _row(raw: str, n: int) -> dict[str, Any]:
    try:
        row = json.loads(raw)
    except ValueError:
        raise _Bad(None, f"line {n} is not JSON") from None
    if not isinstance(row, dict):
        raise _Bad(None, f"line {n} is not a JSON object")
    return row


def _checkpoint(row: dict[str, Any], key: str | None, n: int) -> Checkpoint:
    try:
        return open_note(str(row["checkpoint"]), Verifier.parse(key or str(row["verifier_key"])))
    except (BadCheckpoint, KeyError, ValueError) as exc:
        raise _Bad(None, f"line {n}: checkpoint does not verify: {exc}") from None


def _event(row: dict[str, Any], cp: Checkpoint, n: int) -> None:
    try:
        event, entry = row["event"], str(row["entry"])
        index, size = int(event["index"]), int(row["tree_size"])
        proof = [bytes.fromhex(p) for p in row["proof"]]
    except (KeyError, TypeError, ValueError):
        raise _Bad(None, f"line {n}: malformed event row") from None
    if canonical_json(event).decode() != entry:
        raise _Bad(index, "the event differs from its signed entry (edited after export)")
    if size != cp.size:
        raise _Bad(index, f"proof is for tree size {size}, the checkpoint before it has {cp.size}")
    h = hasher(cp.hash)
    if not verify_inclusion(h, index, cp.size, h.leaf(entry.encode()), proof, cp.root):
        raise _Bad(index, "inclusion proof does not lead to the signed root")
