"""Offline checks an officer runs on an export: no database, no gateway, no network."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from audit.checkpoint import BadCheckpoint, Checkpoint, Verifier, open_note
from audit.events import canonical_json
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
    Rows may follow several checkpoints (an export spanning a new one adds a line)."""
    report = ExportReport(ok=True)
    cp: Checkpoint | None = None
    try:
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            row = _row(raw, n)
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
