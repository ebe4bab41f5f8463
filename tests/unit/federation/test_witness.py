"""Cosigning checkpoints between sites (audit.witness, audit.witnessing), no I/O but files."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import BadCheckpoint, Checkpoint, Signer, open_note
from audit.witness import Witness, add_line, cosign, cosigned_at
from audit.witnessing import checked_notes, store, witness
from exchange.federation.sites import Federation


def sites(tmp_path: Path) -> tuple[Federation, Federation, Signer]:
    league, region = Federation(tmp_path / "league"), Federation(tmp_path / "region")
    signer = Signer("league-audit", Ed25519PrivateKey.generate())
    lk, rk = league.init("league"), region.init("region")
    league.add_site("region", "http://r", rk)
    region.add_site("league", "http://l", lk, signer.verifier.encode())
    return league, region, signer


def note(signer: Signer, size: int, root: bytes = b"\x01" * 32) -> str:
    return signer.sign(Checkpoint("league.example/audit", size, root))


def test_a_cosignature_verifies_and_breaks_with_any_change() -> None:
    signer = Signer("a", Ed25519PrivateKey.generate())
    key = Ed25519PrivateKey.generate()
    n = note(signer, 5)
    cosigned = add_line(n, cosign(n, "region", key, 1_700_000_000))
    w = Witness("region", key.public_key())
    assert cosigned_at(cosigned, w) == 1_700_000_000
    open_note(cosigned, signer.verifier)  # still a valid note of its signer
    tampered = cosigned.replace("\n5\n", "\n6\n", 1)
    assert cosigned_at(tampered, w) is None
    assert (
        cosigned_at(cosigned, Witness("region", Ed25519PrivateKey.generate().public_key())) is None
    )
    assert cosigned_at(n, w) is None


def test_witness_store_and_check_round_trip(tmp_path: Path) -> None:
    league, region, signer = sites(tmp_path)
    cosigned = witness(region, "league", note(signer, 10), now=1)
    path, by = store(league, cosigned, signer.verifier)
    assert by == ["region"] and path.exists()
    notes, lines = checked_notes(league)
    assert notes == [cosigned] and "witnessed by region" in lines[0]


def test_a_kept_note_changed_afterwards_is_caught(tmp_path: Path) -> None:
    league, region, signer = sites(tmp_path)
    path, _ = store(league, witness(region, "league", note(signer, 10)), signer.verifier)
    # The league rewrites the root and re-signs with its own key, keeping region's line.
    forged_body = note(signer, 10, b"\x02" * 32)
    region_line = path.read_text().splitlines()[-1]
    path.write_text(add_line(forged_body, region_line))
    with pytest.raises(BadCheckpoint, match="TAMPERED"):
        checked_notes(league)


def test_the_witness_refuses_forks_and_rollbacks(tmp_path: Path) -> None:
    _, region, signer = sites(tmp_path)
    witness(region, "league", note(signer, 10))
    with pytest.raises(BadCheckpoint, match="fork"):
        witness(region, "league", note(signer, 10, b"\x09" * 32))
    with pytest.raises(BadCheckpoint, match="rollback"):
        witness(region, "league", note(signer, 9))
    witness(region, "league", note(signer, 11))


def test_only_checkpoints_signed_by_the_sites_audit_key_are_cosigned(tmp_path: Path) -> None:
    _, region, _ = sites(tmp_path)
    stranger = Signer("league-audit", Ed25519PrivateKey.generate())
    with pytest.raises(BadCheckpoint):
        witness(region, "league", note(stranger, 3))


def test_a_note_without_a_known_cosignature_is_not_kept(tmp_path: Path) -> None:
    league, _, signer = sites(tmp_path)
    with pytest.raises(BadCheckpoint):
        store(league, note(signer, 4), signer.verifier)
