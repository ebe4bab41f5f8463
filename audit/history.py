"""The chain of signed checkpoints: each one's signature, and its consistency with the one
before it (RFC 9162 consistency proof: the older tree is a prefix of the newer one).

Pure: the caller passes the notes and a function that makes proofs; the officer's browser
re-checks the same proofs and signatures with the key it pinned (console ``verify.js``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from audit.checkpoint import BadCheckpoint, Checkpoint, Verifier, open_note
from audit.merkle import Hash, Hasher, verify_consistency
from exchange.errors import InvalidInput

Status = Literal["consistent", "inconsistent", "bad_signature", "first", "unverifiable"]


@dataclass(frozen=True)
class Link:
    size: int
    created_at: str
    note: str
    status: Status
    root: str = ""  # hex, from the signed note ("" if its signature does not verify)
    previous: int | None = None  # size of the checkpoint before it
    proof: list[str] = field(default_factory=list)  # hex consistency proof previous → size

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "created_at": self.created_at,
            "root": self.root,
            "checkpoint": self.note,
            "status": self.status,
            "previous": self.previous,
            "proof": self.proof,
        }


def _open(note: str, verifier: Verifier) -> Checkpoint | None:
    try:
        return open_note(note, verifier)
    except BadCheckpoint:
        return None


def chain(
    notes: Sequence[tuple[int, str, str]],
    verifier: Verifier,
    h: Hasher,
    prove: Callable[[int, int], list[Hash]],
) -> list[Link]:
    """``notes`` = (size, note, created_at), newest first; the last one only serves as the
    predecessor of the one before it when the caller fetched one more than it shows."""
    opened = [_open(note, verifier) for _, note, _ in notes]
    out: list[Link] = []
    for i, (size, note, created) in enumerate(notes):
        cp = opened[i]
        prev = opened[i + 1] if i + 1 < len(notes) else None
        prev_size = notes[i + 1][0] if i + 1 < len(notes) else None
        if cp is None or cp.size != size:
            out.append(Link(size, created, note, "bad_signature", previous=prev_size))
            continue
        root = cp.root.hex()
        if prev_size is None:
            out.append(Link(size, created, note, "first", root))
            continue
        if prev is None:  # the older one is broken: that link is reported on its own row
            out.append(Link(size, created, note, "unverifiable", root, prev_size))
            continue
        try:
            proof = prove(prev.size, cp.size)
        except InvalidInput:  # the leaves needed were pruned
            out.append(Link(size, created, note, "unverifiable", root, prev_size))
            continue
        ok = verify_consistency(h, prev.size, cp.size, proof, prev.root, cp.root)
        status: Status = "consistent" if ok else "inconsistent"
        out.append(Link(size, created, note, status, root, prev_size, [p.hex() for p in proof]))
    return out
