"""Offline check of an exported audit file (``exchange audit verify-export``): pure, no I/O."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, Signer
from audit.events import AuditEvent, canonical_json
from audit.export import stream_csv
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


def _csv_export(n: int = 7, page: int = 3) -> list[str]:
    """A CSV export as the console streams it: pages of ``page`` rows, the checkpoint in the
    first row only."""
    events = [
        AuditEvent(
            i, f"2026-11-30T10:00:0{i}.000000Z", "record.published", "civil-importer",
            "civil" if i % 2 else None, "civil.residents", "ok", {"n": i, "说明": "数据"},
            ("ab" * 32,), "",
        )
        for i in range(n)
    ]  # fmt: skip
    tree = MerkleTree(SHA256, leaves=[SHA256.leaf(e.canonical()) for e in events])
    note = SIGNER.sign(Checkpoint("exchange.local/audit", n, tree.root(n)))
    rows = [
        {
            "event": e.to_json(),
            "entry": e.canonical().decode(),
            "leaf_hash": tree.leaf(e.index).hex(),
            "proof": [p.hex() for p in tree.inclusion_proof(e.index, n)],
            "tree_size": n,
        }
        for e in events
    ]
    pages = [rows[i : i + page] for i in range(0, n, page)]
    return "".join(stream_csv(note, KEY, pages)).splitlines()


def test_a_csv_export_verifies_too() -> None:
    lines = _csv_export()
    assert lines[0].startswith("index,ts,type,") and len(lines) == 8
    assert lines[1].split(",")[-1] == KEY and lines[2].endswith(",,")  # the first row only
    report = verify_export(lines, KEY)
    assert report.ok and report.events == 7 and report.checkpoints == 1, report.line()


def test_a_csv_row_edited_for_readers_is_named() -> None:
    lines = _csv_export()
    lines[3] = lines[3].replace("civil-importer", "someone-else", 1)
    report = verify_export(lines, KEY)
    assert not report.ok and report.index == 2 and "edited after export" in report.detail


def test_a_csv_without_its_checkpoint_or_key_fails() -> None:
    lines = _csv_export()
    assert "before any signed checkpoint" in verify_export([lines[0], *lines[2:]], KEY).detail
    stranger = Signer("exchange-audit", Ed25519PrivateKey.generate()).verifier.encode()
    assert "does not verify" in verify_export(lines, stranger).detail
    assert "columns" in verify_export([lines[0], "1,2,3"], KEY).detail
