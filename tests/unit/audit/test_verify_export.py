"""Offline check of an exported audit file (``exchange audit verify-export``): pure, no I/O."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, Signer
from audit.events import canonical_json
from audit.merkle import SHA256, MerkleTree
from audit.offline import verify_export

SIGNER = Signer("exchange-audit", Ed25519PrivateKey.generate())
KEY = SIGNER.verifier.encode()


def _export(n: int = 7) -> list[str]:
    events = [{"v": 1, "index": i, "type": "token.issued", "data": {"i": i}} for i in range(n)]
    entries = [canonical_json(e).decode() for e in events]
    tree = MerkleTree(SHA256, leaves=[SHA256.leaf(x.encode()) for x in entries])
    note = SIGNER.sign(Checkpoint("exchange.local/audit", n, tree.root(n)))
    lines = [json.dumps({"checkpoint": note, "verifier_key": KEY})]
    for e, entry in zip(events, entries, strict=True):
        proof = [p.hex() for p in tree.inclusion_proof(e["index"], n)]
        lines.append(json.dumps({"event": e, "entry": entry, "proof": proof, "tree_size": n}))
    return lines


def test_a_good_export_verifies_with_the_pinned_key() -> None:
    report = verify_export(_export(), KEY)
    assert report.ok and report.events == 7 and report.checkpoints == 1, report.line()


def test_an_edited_event_is_named() -> None:
    lines = _export()
    row = json.loads(lines[3])
    row["event"]["data"] = {"i": 99}
    lines[3] = json.dumps(row)
    report = verify_export(lines, KEY)
    assert not report.ok and report.index == 2 and "edited after export" in report.detail


def test_an_edited_entry_breaks_its_proof() -> None:
    lines = _export()
    row = json.loads(lines[2])
    row["event"]["type"] = row["event"]["type"].replace("issued", "denied")
    row["entry"] = canonical_json(row["event"]).decode()
    lines[2] = json.dumps(row)
    report = verify_export(lines, KEY)
    assert (
        not report.ok
        and report.index == 1
        and "does not lead to the signed root" in (report.detail)
    )


def test_another_key_or_no_checkpoint_fails() -> None:
    stranger = Signer("exchange-audit", Ed25519PrivateKey.generate()).verifier.encode()
    assert "does not verify" in verify_export(_export(), stranger).detail
    assert "before any signed checkpoint" in verify_export(_export()[1:], KEY).detail
    assert verify_export([], KEY).detail == "no signed checkpoint in the file"
    assert "not JSON" in verify_export(["{"], KEY).detail
