"""The checkpoint chain: signatures and consistency between consecutive checkpoints."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, Signer
from audit.history import chain
from audit.merkle import SHA256, Hash, MerkleTree
from exchange.errors import InvalidInput

SIGNER = Signer("exchange-audit", Ed25519PrivateKey.generate())


def _tree(n: int) -> MerkleTree:
    return MerkleTree(SHA256, leaves=[SHA256.leaf(str(i).encode()) for i in range(n)])


def _note(tree: MerkleTree, size: int, signer: Signer = SIGNER) -> tuple[int, str, str]:
    return size, signer.sign(Checkpoint("o", size, tree.root(size))), f"t{size}"


def test_consecutive_checkpoints_are_consistent() -> None:
    t = _tree(40)
    notes = [_note(t, n) for n in (40, 25, 10, 3)]
    links = chain(notes, SIGNER.verifier, SHA256, t.consistency_proof)
    assert [(x.size, x.status, x.previous) for x in links] == [
        (40, "consistent", 25),
        (25, "consistent", 10),
        (10, "consistent", 3),
        (3, "first", None),
    ]
    assert links[0].proof and links[0].root == t.root(40).hex()


def test_a_forked_checkpoint_is_inconsistent() -> None:
    t, fork = _tree(40), _tree(30)
    fork.leaves[2] = SHA256.leaf(b"rewritten")
    notes = [_note(t, 40), _note(fork, 30), _note(t, 10)]
    links = chain(notes, SIGNER.verifier, SHA256, t.consistency_proof)
    # 40 vs the forged 30: the honest proof cannot reconcile the forged root; same for 30 vs 10.
    assert [x.status for x in links] == ["inconsistent", "inconsistent", "first"]


def test_bad_signatures_and_pruned_leaves() -> None:
    t = _tree(20)
    stranger = Signer("exchange-audit", Ed25519PrivateKey.generate())
    notes = [_note(t, 20), _note(t, 12, stranger), _note(t, 5)]
    links = chain(notes, SIGNER.verifier, SHA256, t.consistency_proof)
    assert [x.status for x in links] == ["unverifiable", "bad_signature", "first"]
    assert links[1].root == ""

    def pruned(m: int, n: int) -> list[Hash]:
        raise InvalidInput("leaf 0 has been pruned")

    links = chain([_note(t, 20), _note(t, 5)], SIGNER.verifier, SHA256, pruned)
    assert [x.status for x in links] == ["unverifiable", "first"]


def test_size_line_must_match_the_row() -> None:
    t = _tree(8)
    _, note, at = _note(t, 8)
    links = chain([(7, note, at)], SIGNER.verifier, SHA256, t.consistency_proof)
    assert links[0].status == "bad_signature"
