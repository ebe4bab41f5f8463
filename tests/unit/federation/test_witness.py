"""Cosigning checkpoints between sites (audit.witness, audit.witnessing), no I/O but files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import BadCheckpoint, Checkpoint, Signer, open_note
from audit.merkle import SHA256, MerkleTree
from audit.witness import (
    Witness,
    WitnessRefused,
    WitnessSizeMismatch,
    add_line,
    check_extends,
    cosign,
    cosigned_at,
    decode_proof,
    parse_request,
    proof_length,
    request_text,
)
from audit.witnessing import checked_notes, coverage, labels, store, witness
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
    kept = checked_notes(league)
    assert [(c.note, c.size, c.by) for c in kept] == [(cosigned, 10, ("region",))]
    assert coverage(kept) == {"region": 10} and labels(kept) == {10: "cosigned by region"}


def test_a_kept_note_changed_afterwards_is_caught(tmp_path: Path) -> None:
    league, region, signer = sites(tmp_path)
    path, _ = store(league, witness(region, "league", note(signer, 10)), signer.verifier)
    # the league rewrites the root and re-signs with its own key, keeping region's line
    forged_body = note(signer, 10, b"\x02" * 32)
    region_line = path.read_text().splitlines()[-1]
    path.write_text(add_line(forged_body, region_line))
    with pytest.raises(BadCheckpoint, match="TAMPERED"):
        checked_notes(league)


def tree(n: int, salt: bytes = b"") -> MerkleTree:
    return MerkleTree(SHA256, leaves=[SHA256.leaf(salt + str(i).encode()) for i in range(n)])


def b64(proof: list[bytes]) -> list[str]:
    return [base64.b64encode(p).decode() for p in proof]


def test_the_witness_refuses_forks_and_rollbacks(tmp_path: Path) -> None:
    _, region, signer = sites(tmp_path)
    log = tree(40)
    witness(region, "league", note(signer, 10, log.root(10)))
    with pytest.raises(WitnessRefused, match="fork"):
        witness(region, "league", note(signer, 10, b"\x09" * 32))
    with pytest.raises(WitnessRefused, match="rollback"):
        witness(region, "league", note(signer, 9, log.root(9)), old_size=10)
    witness(region, "league", note(signer, 10, log.root(10)))  # the same one again: fine
    with pytest.raises(WitnessSizeMismatch) as bare:  # bigger, no proof: which size to prove
        witness(region, "league", note(signer, 25, log.root(25)))
    assert bare.value.details == {"size": 10}
    with pytest.raises(WitnessSizeMismatch):  # a proof from a size we did not cosign
        witness(region, "league", note(signer, 25, log.root(25)), old_size=7,
                proof=b64(log.consistency_proof(7, 25)))  # fmt: skip
    good = b64(log.consistency_proof(10, 25))
    witness(region, "league", note(signer, 25, log.root(25)), old_size=10, proof=good)
    assert region.witnessed()["league"]["size"] == 25
    # a rewritten history: same size 40, other leaves from 20 on; a proof from 25 cannot hold
    forged = MerkleTree(SHA256, leaves=[*log.leaves[:20], *tree(20, b"x").leaves])
    with pytest.raises(WitnessRefused, match="consistency proof fails"):
        witness(region, "league", note(signer, 40, forged.root(40)), old_size=25,
                proof=b64(forged.consistency_proof(25, 40)))  # fmt: skip
    assert region.witnessed()["league"]["size"] == 25  # a refusal changes nothing
    witness(region, "league", note(signer, 40, log.root(40)), old_size=25,
            proof=b64(log.consistency_proof(25, 40)))  # fmt: skip


def test_the_first_checkpoint_is_proven_from_size_zero(tmp_path: Path) -> None:
    _, region, signer = sites(tmp_path)
    with pytest.raises(WitnessSizeMismatch) as e:
        witness(region, "league", note(signer, 5, tree(5).root()), old_size=3)
    assert e.value.details == {"size": 0}
    witness(region, "league", note(signer, 5, tree(5).root()), old_size=0)


@pytest.mark.parametrize(
    ("proof", "message"),
    [
        (["!!not base64!!"], "hash 0 is not base64"),
        ([base64.b64encode(b"short").decode()], "hash 0 has 5 bytes"),
        ([17], "hash 0 is not a base64 string"),
        (["AAAA"] * 65, "at most 64 hashes"),
    ],
)
def test_malformed_proof_hashes_are_named(proof: list[object], message: str) -> None:
    with pytest.raises(BadCheckpoint, match=message):
        decode_proof(proof, SHA256)


def test_consistency_checks_say_what_is_wrong() -> None:
    log = tree(30)
    r = lambda n: log.root(n)  # noqa: E731
    proof = log.consistency_proof(11, 30)
    check_extends(SHA256, (11, r(11)), (30, r(30)), proof)
    check_extends(SHA256, (0, SHA256.empty()), (30, r(30)), [])
    with pytest.raises(BadCheckpoint, match="truncated or for other sizes"):
        check_extends(SHA256, (11, r(11)), (30, r(30)), proof[:-1])
    with pytest.raises(BadCheckpoint, match="truncated or for other sizes"):
        check_extends(SHA256, (11, r(11)), (30, r(30)), [*proof, proof[0]])
    other = next(m for m in range(12, 30) if proof_length(m, 30) == len(proof))
    with pytest.raises(WitnessRefused):  # the right shape, made for other sizes
        check_extends(SHA256, (other, r(other)), (30, r(30)), proof)
    with pytest.raises(WitnessRefused, match="rollback"):
        check_extends(SHA256, (11, r(11)), (10, r(10)), [])
    with pytest.raises(WitnessRefused, match="fork"):
        check_extends(SHA256, (11, r(11)), (11, r(12)), [])
    with pytest.raises(BadCheckpoint, match="one size"):
        check_extends(SHA256, (11, r(11)), (11, r(11)), proof[:1])
    with pytest.raises(BadCheckpoint, match="negative"):
        check_extends(SHA256, (-1, r(11)), (11, r(11)), [])
    flipped = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    with pytest.raises(WitnessRefused, match="consistency proof fails"):
        check_extends(SHA256, (11, r(11)), (30, r(30)), flipped)


def test_proof_length_matches_the_tree() -> None:
    log = tree(70)
    for n in range(1, 71):
        for m in range(0, n + 1):
            assert proof_length(m, n) == len(log.consistency_proof(m, n)), (m, n)


def test_request_files_round_trip_and_refuse_garbage() -> None:
    signer = Signer("a", Ed25519PrivateKey.generate())
    log = tree(9)
    n = note(signer, 9, log.root())
    text = request_text(n, 4, log.consistency_proof(4, 9))
    assert parse_request(text) == (n, 4, b64(log.consistency_proof(4, 9)))
    assert parse_request(n) == (n, None, [])
    with pytest.raises(BadCheckpoint, match="not a size"):
        parse_request("old -3\n\n" + n)
    with pytest.raises(BadCheckpoint, match="no checkpoint"):
        parse_request("old 3\nAAAA")


def test_only_checkpoints_signed_by_the_sites_audit_key_are_cosigned(tmp_path: Path) -> None:
    _, region, _ = sites(tmp_path)
    stranger = Signer("league-audit", Ed25519PrivateKey.generate())
    with pytest.raises(BadCheckpoint):
        witness(region, "league", note(stranger, 3))


def test_a_note_without_a_known_cosignature_is_not_kept(tmp_path: Path) -> None:
    league, _, signer = sites(tmp_path)
    with pytest.raises(BadCheckpoint):
        store(league, note(signer, 4), signer.verifier)


def test_kept_notes_merge_two_witnesses_and_drop_superseded_ones(tmp_path: Path) -> None:
    league, region, signer = sites(tmp_path)
    third = Federation(tmp_path / "third")
    league.add_site("third", "http://t", third.init("third"))
    third.add_site("league", "http://l", league.public_key(), signer.verifier.encode())
    log = tree(20)
    first = note(signer, 8, log.root(8))
    store(league, witness(region, "league", first), signer.verifier)
    _, by = store(league, witness(third, "league", first), signer.verifier)
    assert by == ["region", "third"]  # one file, both lines
    assert [c.by for c in checked_notes(league)] == [("region", "third")]
    later = note(signer, 20, log.root(20))
    proof = b64(log.consistency_proof(8, 20))
    store(league, witness(region, "league", later, old_size=8, proof=proof), signer.verifier)
    assert [c.size for c in checked_notes(league)] == [8, 20]  # third has not cosigned 20 yet
    store(league, witness(third, "league", later, old_size=8, proof=proof), signer.verifier)
    assert [(c.size, c.by) for c in checked_notes(league)] == [(20, ("region", "third"))]
