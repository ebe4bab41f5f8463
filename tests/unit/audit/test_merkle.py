"""RFC 9162 hashing and proofs: known vectors plus properties over many tree shapes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from audit.merkle import (
    SHA256,
    SM3,
    Frontier,
    MerkleTree,
    decompose,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# The RFC 6962 / certificate-transparency reference leaves and roots.
LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def leaves(n: int, h=SHA256) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [h.leaf(i.to_bytes(4, "big")) for i in range(n)]


def test_reference_roots() -> None:
    hashes = [SHA256.leaf(bytes.fromhex(x)) for x in LEAVES]
    tree = MerkleTree(SHA256, leaves=hashes)
    for n, want in enumerate(ROOTS, start=1):
        assert tree.root(n).hex() == want
        assert root_of(SHA256, hashes[:n]).hex() == want
    assert tree.root(0) == SHA256.empty()


def test_reference_inclusion_proof() -> None:
    tree = MerkleTree(SHA256, leaves=[SHA256.leaf(bytes.fromhex(x)) for x in LEAVES])
    # Leaf 0 of 8: siblings are leaf 1, node(2,3) and node(4..8).
    proof = tree.inclusion_proof(0, 8)
    assert proof[0] == SHA256.leaf(b"\x00")
    assert len(proof) == 3


@given(st.integers(1, 70), st.data())
def test_inclusion_proofs_verify_and_bind(n: int, data: st.DataObject) -> None:
    tree = MerkleTree(SHA256, leaves=leaves(n))
    m = data.draw(st.integers(0, n - 1))
    proof = tree.inclusion_proof(m, n)
    root = tree.root(n)
    assert verify_inclusion(SHA256, m, n, tree.leaf(m), proof, root)
    assert not verify_inclusion(SHA256, m, n, SHA256.leaf(b"x"), proof, root)
    if proof:
        bad = [*proof[:-1], SHA256.leaf(b"y")]
        assert not verify_inclusion(SHA256, m, n, tree.leaf(m), bad, root)
    if n > 1:
        other = (m + 1) % n
        assert not verify_inclusion(SHA256, other, n, tree.leaf(m), proof, root)


@given(st.integers(1, 70), st.data())
def test_consistency_proofs_verify_and_bind(n: int, data: st.DataObject) -> None:
    tree = MerkleTree(SHA256, leaves=leaves(n))
    m = data.draw(st.integers(0, n))
    proof = tree.consistency_proof(m, n)
    assert verify_consistency(SHA256, m, n, proof, tree.root(m), tree.root(n))
    if 0 < m < n:
        forked = MerkleTree(SHA256, leaves=[*leaves(m - 1), SHA256.leaf(b"fork")])
        assert not verify_consistency(SHA256, m, n, proof, forked.root(m), tree.root(n))
        assert not verify_consistency(SHA256, m, n, proof[:-1], tree.root(m), tree.root(n))


@given(st.integers(0, 300))
def test_frontier_matches_tree_and_resumes_from_anchor(n: int) -> None:
    hashes = leaves(n)
    f = Frontier(SHA256)
    for lh in hashes:
        f.add(lh)
    tree = MerkleTree(SHA256, leaves=hashes)
    assert f.root() == tree.root()
    p = n // 3
    anchor = [tree.subtree(a, b) for a, b in decompose(p)]
    resumed = Frontier.from_anchor(SHA256, p, anchor)
    for lh in hashes[p:]:
        resumed.add(lh)
    assert resumed.root() == tree.root()
    pruned = MerkleTree(SHA256, p, anchor, hashes[p:])
    for m in range(p, n):
        assert pruned.inclusion_proof(m, n) == tree.inclusion_proof(m, n)


@given(
    st.integers(0, 300), st.lists(st.integers(0, 140), max_size=6), st.sampled_from([SHA256, SM3])
)
def test_frontier_extend_is_add_one_by_one(start: int, cuts: list[int], h) -> None:  # type: ignore[no-untyped-def]
    """Blocks of any size from any starting size: the same range as single adds, at every
    step (verify reads roots between blocks, at checkpoint sizes)."""
    hashes = leaves(start + sum(cuts), h)
    one, bulk = Frontier(h), Frontier(h)
    for lh in hashes[:start]:
        one.add(lh)
    bulk.extend(hashes[:start])
    assert (bulk.size, bulk.nodes) == (one.size, one.nodes)
    at = start
    for cut in cuts:
        for lh in hashes[at : at + cut]:
            one.add(lh)
        bulk.extend(hashes[at : at + cut])
        at += cut
        assert (bulk.size, bulk.nodes, bulk.root()) == (one.size, one.nodes, one.root())


def test_sm3_tree_differs_and_verifies() -> None:
    tree = MerkleTree(SM3, leaves=leaves(5, SM3))
    proof = tree.inclusion_proof(3, 5)
    assert verify_inclusion(SM3, 3, 5, tree.leaf(3), proof, tree.root())
    assert tree.root() != MerkleTree(SHA256, leaves=leaves(5)).root()
