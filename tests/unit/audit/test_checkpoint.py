"""Signed notes: round trip, wrong key, edited body, verifier key encoding."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import BadCheckpoint, Checkpoint, Signer, Verifier, open_note


def signer(name: str = "exchange-audit") -> Signer:
    return Signer(name, Ed25519PrivateKey.generate())


def test_round_trip_and_format() -> None:
    s = signer()
    cp = Checkpoint("gov.example/audit", 42, b"\x01" * 32, "sha256")
    note = s.sign(cp)
    lines = note.split("\n")
    assert lines[:4] == [
        "gov.example/audit",
        "42",
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        "exchange-audit 1 sha256",
    ]
    assert lines[5].startswith("\u2014 exchange-audit ")
    assert open_note(note, s.verifier) == cp
    assert open_note(note, Verifier.parse(s.verifier.encode())) == cp


def test_rejects_other_key_and_edits() -> None:
    s = signer()
    note = s.sign(Checkpoint("o", 5, b"\x02" * 32))
    with pytest.raises(BadCheckpoint):
        open_note(note, signer().verifier)
    with pytest.raises(BadCheckpoint):
        open_note(note.replace("\n5\n", "\n6\n"), s.verifier)
    with pytest.raises(BadCheckpoint):
        open_note(note.split("\n\n")[0] + "\n", s.verifier)


def test_verifier_key_id_is_checked() -> None:
    enc = signer().verifier.encode()
    name, _kid, blob = enc.split("+", 2)
    with pytest.raises(BadCheckpoint):
        Verifier.parse(f"{name}+00000000+{blob}")


def test_verifier_key_round_trips_for_many_keys() -> None:
    # base64 key data may contain "+", the field separator: only the first two split.
    for _ in range(64):
        v = signer().verifier
        assert Verifier.parse(v.encode()).key_id == v.key_id
