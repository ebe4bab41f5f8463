"""Verify a stored audit log: pure functions over entries and signed checkpoints, no I/O.

One pass over the entries in storage order recomputes every leaf hash and the tree root at
each checkpoint size. It stops at the first index where the log was changed:

- **modified**: an entry does not parse, disagrees with its stored index columns or leaf hash,
  or its successor's ``prev`` link does not match it;
- **deleted**: an index is missing from the sequence;
- **reordered**: an index appears at another position (or twice);
- **truncated**: the log ends before a signed checkpoint (or the expected head) says it must.

Every checkpoint signature is checked; each checkpoint root must equal the root recomputed at
its size, which also proves every pair of consecutive checkpoints consistent (they are
prefixes of one recomputed tree). Roots are compared only for sizes the log still covers;
older checkpoints of a pruned log are checked through the pruning anchor.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, islice
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from audit.checkpoint import BadCheckpoint, Checkpoint, Verifier, open_note
from audit.events import FORMAT, BadEvent, decode
from audit.merkle import Frontier, Hasher


class StoredEntry(NamedTuple):
    """One entry as storage holds it; ``slot``/``leaf_hash``/``view`` are what it claims.
    (A named tuple: a million of them are made per verification, at a third of a dataclass's
    cost.)"""

    entry: bytes
    slot: int | None = None  # the storage's own index column (DB), None for Kafka
    leaf_hash: bytes | None = None
    # Indexed columns to compare with the entry: see :func:`view_of`.
    view: tuple[Any, ...] | None = None
    where: str = ""  # e.g. "offset 41" for messages


@dataclass(frozen=True)
class Anchor:
    """What pruning keeps of leaves [0, size): the compact range and the last leaf hash."""

    size: int
    nodes: tuple[bytes, ...]
    last: str


@dataclass
class Report:
    ok: bool
    size: int = 0
    root: bytes = b""
    checkpoints: int = 0
    index: int | None = None  # first index where tampering shows
    kind: str = ""  # modified | deleted | reordered | truncated | checkpoint
    detail: str = ""
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.ok:
            return (
                f"ok: {self.size} events, root {self.root.hex()}, "
                f"{self.checkpoints} checkpoints verified"
            )
        return f"TAMPERED at index {self.index}: {self.kind}: {self.detail}"


_REQUIRED = {"v", "index", "ts", "type", "actor", "department", "topic", "outcome", "data"} | {
    "subjects",
    "prev",
}


class _Fail(Exception):
    def __init__(self, index: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.index, self.kind, self.detail = index, kind, detail


def view_of(
    ts: Any,
    type_: Any,
    actor: Any,
    department: Any,
    topic: Any,
    outcome: Any,
    subjects: Iterable[Any],
) -> tuple[Any, ...]:
    """What a storage's index columns must equal for an entry (subjects in sorted order)."""
    return (ts, type_, actor, department, topic, outcome, tuple(sorted(subjects)))


def _tag(size: int, labels: Mapping[int, str]) -> str:
    return f" ({labels[size]})" if size in labels else ""


def open_checkpoints(
    notes: Sequence[str],
    verifier: Verifier,
    origin: str | None,
    h: Hasher,
    labels: Mapping[int, str] | None = None,
) -> list[Checkpoint]:
    """Check signatures and agreement; raise :class:`_Fail` (index = size) on the first bad one."""
    labels = labels or {}
    by_size: dict[int, Checkpoint] = {}
    for note in notes:
        try:
            cp = open_note(note, verifier)
        except BadCheckpoint as exc:
            raise _Fail(0, "checkpoint", exc.message) from None
        if cp.hash != h.name or (origin is not None and cp.origin != origin):
            raise _Fail(cp.size, "checkpoint", f"checkpoint {cp.size} is for another log")
        seen = by_size.setdefault(cp.size, cp)
        if seen.root != cp.root:
            raise _Fail(
                cp.size,
                "checkpoint",
                f"two signed checkpoints of size {cp.size} differ{_tag(cp.size, labels)}",
            )
    return [by_size[s] for s in sorted(by_size)]


def verify_log(
    h: Hasher,
    entries: Iterable[StoredEntry],
    *,
    checkpoints: Sequence[str],
    verifier: Verifier,
    origin: str | None = None,
    anchor: Anchor | None = None,
    expected_size: int | None = None,
    trusted: Sequence[str] = (),
    labels: Mapping[int, str] | None = None,
) -> Report:
    """Recompute the log from ``entries`` and check it against signed checkpoints.
    ``labels``: per checkpoint size, words naming where it came from (e.g. "cosigned by
    league"), added to a failure at that size."""
    tags = labels or {}
    try:
        cps = open_checkpoints([*checkpoints, *trusted], verifier, origin, h, tags)
        with gc_paused():
            return _walk(h, iter(entries), cps, anchor, expected_size, tags)
    except _Fail as f:
        return Report(ok=False, index=f.index, kind=f.kind, detail=f.detail)


CHUNK = 4096  # entries hashed and checked per step; the tree grows by whole blocks


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a walk runs. It makes no reference cycles, but its
    millions of short-lived tuples and dicts kept triggering collections that traversed the
    whole heap: ~30 % of a verification's CPU. Reference counting frees everything as usual;
    cycles made meanwhile by other threads wait until the walk ends. (Verification runs in
    the CLI and its helper process, not in the gateway.)"""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _walk(
    h: Hasher,
    entries: Iterable[StoredEntry],
    cps: list[Checkpoint],
    anchor: Anchor | None,
    expected_size: int | None,
    labels: Mapping[int, str],
) -> Report:
    start = anchor.size if anchor else 0
    tree = Frontier.from_anchor(h, start, anchor.nodes) if anchor else Frontier(h)
    prev = anchor.last if anchor else ""
    pending = [cp for cp in cps if cp.size >= start]
    report = _report(start, len(cps) - len(pending))
    last_good = start
    it = iter(entries)
    digest = h.digest
    while chunk := list(islice(it, CHUNK)):
        base = tree.size
        leaves = [digest(b"\x00" + item.entry) for item in chunk]
        bad, fail, found = _check(chunk, leaves, base, prev)
        # Checkpoints up to the first bad entry are checked first, as one entry at a time
        # would: a rewritten stretch is named from the last good checkpoint.
        done = 0
        while pending and pending[0].size <= base + bad:
            cp = pending.pop(0)
            tree.extend(leaves[done : cp.size - base])
            done = cp.size - base
            last_good = _check_root(tree, cp, last_good, report, labels)
        if fail is not None:
            raise fail
        if found is not None:
            _misplaced(base + bad, found, chain(chunk[bad + 1 :], it))
        tree.extend(leaves[done:])
        prev = leaves[-1].hex()
    while pending and pending[0].size == tree.size:  # e.g. an empty log's checkpoint of 0
        last_good = _check_root(tree, pending.pop(0), last_good, report, labels)
    if pending:
        cp = pending[0]
        raise _Fail(
            tree.size,
            "truncated",
            f"log ends at {tree.size}, checkpoint says {cp.size}{_tag(cp.size, labels)}",
        )
    if expected_size is not None and expected_size > tree.size:
        raise _Fail(tree.size, "truncated", f"log ends at {tree.size}, head says {expected_size}")
    return _finish(report, tree, cps)


def _check(
    chunk: list[StoredEntry], leaves: list[bytes], base: int, prev: str
) -> tuple[int, _Fail | None, int | None]:
    """The first entry of ``chunk`` (leaf ``base`` on) that shows tampering: its position,
    and the failure, or the index found where another belongs; ``len(chunk)`` if none."""
    for k, item in enumerate(chunk):
        i = base + k
        try:
            ev = _decode(item.entry, i)
        except _Fail as f:
            return k, f, None
        if ev["index"] != i:
            return k, None, ev["index"]
        if item.slot is not None and item.slot != i:
            return (
                k,
                _Fail(i, "modified", f"stored index column {item.slot} differs from entry"),
                None,
            )
        if ev["prev"] != prev:
            return (
                k,
                _Fail(i - 1, "modified", f"event {i - 1} does not match the link in event {i}"),
                None,
            )
        if item.leaf_hash is not None and item.leaf_hash != leaves[k]:
            return k, _Fail(i, "modified", "entry does not match its stored leaf hash"), None
        if (view := item.view) is not None and view != (
            *(ev["ts"], ev["type"], ev["actor"], ev["department"], ev["topic"], ev["outcome"]),
            tuple(sorted(ev["subjects"])),
        ):  # view_of(ev), inline: it runs a million times
            return k, _Fail(i, "modified", "indexed columns differ from the entry"), None
        prev = leaves[k].hex()
    return len(chunk), None, None


# What :func:`_check` compares of a parsed entry, besides its ``subjects`` list.
_SCALARS = itemgetter("index", "v", "prev", "ts", "type", "actor", "department", "topic", "outcome")
_PLAIN = {str, int, bool, type(None)}


def _parse(entry: bytes) -> Any:
    """``json.loads(entry)`` as far as the checks can tell, at a third of its cost: orjson reads
    strict RFC 8259 UTF-8 to the same values, and whatever it refuses (NaN, ``1e400``, lone
    surrogates, a BOM, other encodings) goes to ``json.loads``, which decides as before. The
    one thing orjson reads differently, an integer beyond 64 bits (a float to it, an int to
    json), also goes there when it may land in a field the checks compare (anything but plain
    text, integers, booleans and null there or among the subjects); in ``data`` it does not
    matter, since only the entry's bytes are hashed."""
    try:
        obj = orjson.loads(entry)
    except orjson.JSONDecodeError:
        return json.loads(entry)
    if type(obj) is dict and obj.keys() >= _REQUIRED:
        subjects = obj["subjects"]
        if not set(map(type, _SCALARS(obj))) <= _PLAIN or (
            type(subjects) is list and not set(map(type, subjects)) <= _PLAIN
        ):
            return json.loads(entry)
    return obj


def _decode(entry: bytes, i: int, parse: Callable[[bytes], Any] = _parse) -> dict[str, Any]:
    """The entry parsed and shape-checked (``parse``: :func:`_parse`; tests pass json.loads)."""
    try:
        obj = parse(entry)
    except (ValueError, UnicodeDecodeError):
        raise _Fail(i, "modified", "entry is not JSON") from None
    if not isinstance(obj, dict) or obj.get("v") != FORMAT or not obj.keys() >= _REQUIRED:
        raise _Fail(i, "modified", "entry is not a version-1 audit event")
    if not isinstance(obj["index"], int) or not isinstance(obj["subjects"], list):
        raise _Fail(i, "modified", "entry fields have the wrong types")
    return obj


@dataclass
class Span:
    """A stretch of the log checked on its own (see :func:`check_span`): all it passes on."""

    base: int  # the leaf index its first entry must have
    leaves: list[bytes] = field(default_factory=list)
    first_prev: str | None = None  # its first entry's link, checked against the stretch before
    ok: bool = True


def check_span(h: Hasher, entries: Iterable[StoredEntry], base: int) -> Span:
    """Every check of one entry at a time for a stretch starting at leaf ``base``, except the
    link of its first entry (recorded) and the tree (its leaves are kept): one half of a
    parallel verification. ``ok`` is False at the first entry that would fail, and nothing is
    said of where or why: the caller then verifies the whole log in order instead."""
    with gc_paused():
        return _span(h, iter(entries), base)


def _span(h: Hasher, it: Iterator[StoredEntry], base: int) -> Span:
    span = Span(base)
    digest = h.digest
    prev: str | None = None
    while chunk := list(islice(it, CHUNK)):
        if prev is None:
            try:
                prev = span.first_prev = str(_decode(chunk[0].entry, base)["prev"])
            except _Fail:
                span.ok = False
                return span
        leaves = [digest(b"\x00" + item.entry) for item in chunk]
        bad, _, _ = _check(chunk, leaves, base + len(span.leaves), prev)
        if bad < len(chunk):
            span.ok = False
            return span
        span.leaves += leaves
        prev = leaves[-1].hex()
    return span


def verify_spans(
    h: Hasher,
    spans: Sequence[Span],
    *,
    checkpoints: Sequence[str],
    verifier: Verifier,
    origin: str | None = None,
    anchor: Anchor | None = None,
    expected_size: int | None = None,
    trusted: Sequence[str] = (),
    labels: Mapping[int, str] | None = None,
) -> Report | None:
    """What :func:`verify_log` reports for the entries of ``spans`` in order, if they join
    into an intact log; None if anything is off (a span failed, they do not join, a root
    differs, the log is short): then only the one-pass walk can say where and how."""
    first = anchor.size if anchor else 0
    end, prev = first, anchor.last if anchor else ""
    for span in spans:
        if not span.ok or span.base != end or (span.leaves and span.first_prev != prev):
            return None
        end += len(span.leaves)
        prev = span.leaves[-1].hex() if span.leaves else prev
    try:
        cps = open_checkpoints([*checkpoints, *trusted], verifier, origin, h, labels)
    except _Fail:
        return None
    tree = Frontier.from_anchor(h, first, anchor.nodes) if anchor else Frontier(h)
    pending = [cp for cp in cps if cp.size >= first]
    report = _report(first, len(cps) - len(pending))
    leaves = [lh for span in spans for lh in span.leaves]
    done = 0
    for cp in pending:
        if cp.size > end:
            return None  # truncated
        tree.extend(leaves[done : cp.size - first])
        done = cp.size - first
        if tree.root() != cp.root:
            return None
        report.checkpoints += 1
    tree.extend(leaves[done:])
    if expected_size is not None and expected_size > tree.size:
        return None
    return _finish(report, tree, cps)


def _report(start: int, checkpoints: int) -> Report:
    report = Report(ok=True, checkpoints=checkpoints)
    if start:
        report.notes.append(f"log pruned below index {start}; verified from the anchor")
    return report


def _finish(report: Report, tree: Frontier, cps: list[Checkpoint]) -> Report:
    report.size, report.root = tree.size, tree.root()
    covered = max((cp.size for cp in cps), default=0)
    if covered < tree.size:
        report.notes.append(
            f"events {covered}..{tree.size - 1} are not yet covered by a signed checkpoint"
        )
    return report


def _check_root(
    tree: Frontier, cp: Checkpoint, last_good: int, report: Report, labels: Mapping[int, str]
) -> int:
    if tree.root() != cp.root:
        raise _Fail(
            last_good,
            "modified",
            f"events in [{last_good}, {cp.size}) were rewritten: root differs from the signed "
            f"checkpoint of size {cp.size}{_tag(cp.size, labels)}",
        )
    report.checkpoints += 1
    return cp.size


def _misplaced(i: int, found: int, rest: Iterable[StoredEntry]) -> None:
    """Index ``i`` expected, ``found`` seen: a later ``i`` means reordering, else deletion."""
    if found < i:
        raise _Fail(i, "reordered", f"event {found} appears again where {i} belongs")
    for item in rest:
        try:
            if decode(item.entry).index == i:
                raise _Fail(i, "reordered", f"event {i} appears later, after {found}")
        except BadEvent:
            continue
    raise _Fail(i, "deleted", f"event {i} is missing (next stored is {found})")
