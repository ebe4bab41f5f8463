"""Offline checks an officer runs on an export: no database, no gateway, no network."""

from __future__ import annotations

from audit.checkpoint import Verifier, open_note
from audit.merkle import hasher, verify_inclusion


def verify_exported(entry: str, index: int, proof_hex: list[str], note: str, key: str) -> bool:
    """True if ``entry`` is leaf ``index`` of the tree the signed ``note`` commits to."""
    cp = open_note(note, Verifier.parse(key))
    h = hasher(cp.hash)
    proof = [bytes.fromhex(p) for p in proof_hex]
    return verify_inclusion(h, index, cp.size, h.leaf(entry.encode()), proof, cp.root)
