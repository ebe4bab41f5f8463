"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs. Pure functions, no I/O.

Leaves are hashed as ``H(0x00 || entry)`` and interior nodes as ``H(0x01 || left || right)``
(domain separation, §2.1.1). SHA-256 by default; SM3 (GB/T 32905) as the optional hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes

from exchange.errors import InvalidInput

Hash = bytes


def _sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class Hasher:
    """One hash function with the RFC 9162 leaf/node domain separation."""

    name: str
    digest: Callable[[bytes], bytes]

    def leaf(self, entry: bytes) -> Hash:
        return self.digest(b"\x00" + entry)

    def node(self, left: Hash, right: Hash) -> Hash:
        return self.digest(b"\x01" + left + right)

    def empty(self) -> Hash:
        return self.digest(b"")


SHA256 = Hasher("sha256", _sha256)
SM3 = Hasher("sm3", _sm3)
HASHERS = {h.name: h for h in (SHA256, SM3)}


def hasher(name: str) -> Hasher:
    try:
        return HASHERS[name]
    except KeyError:
        raise InvalidInput(f"unknown audit hash {name!r}; use one of {sorted(HASHERS)}") from None


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def decompose(n: int) -> list[tuple[int, int]]:
    """Ranges of the perfect subtrees that make up the first ``n`` leaves, left to right."""
    out, start = [], 0
    for bit in reversed(range(n.bit_length())):
        if n >> bit & 1:
            out.append((start, start + (1 << bit)))
            start += 1 << bit
    return out


# -- streaming root: one pass, O(log n) memory ------------------------------------------------


@dataclass
class Frontier:
    """The compact range of a growing tree: perfect subtree hashes, biggest first."""

    h: Hasher
    size: int = 0
    nodes: list[Hash] = field(default_factory=list)

    @classmethod
    def from_anchor(cls, h: Hasher, size: int, nodes: Sequence[Hash]) -> Frontier:
        if len(nodes) != len(decompose(size)):
            raise InvalidInput("anchor does not match its size")
        return cls(h, size, list(nodes))

    def add(self, leaf_hash: Hash) -> None:
        self.nodes.append(leaf_hash)
        self.size += 1
        n = self.size
        while n & 1 == 0:  # merge equal-sized perfect subtrees at the right edge
            right = self.nodes.pop()
            self.nodes[-1] = self.h.node(self.nodes[-1], right)
            n >>= 1

    def extend(self, leaf_hashes: Sequence[Hash]) -> None:
        """``add`` each leaf hash, a perfect block at a time: where the size allows a block of
        2**k leaves, its levels are hashed in bulk and its root joins the range at once."""
        node = self.h.digest
        i, n = 0, len(leaf_hashes)
        while i < n:
            room = (self.size & -self.size) or 1 << 62  # the biggest block keeping alignment
            block = min(room, 1 << ((n - i).bit_length() - 1))
            if block == 1:
                self.add(leaf_hashes[i])
                i += 1
                continue
            level = leaf_hashes[i : i + block]
            while len(level) > 1:
                level = [
                    node(b"\x01" + a + b) for a, b in zip(level[::2], level[1::2], strict=True)
                ]
            self.nodes.append(level[0])
            self.size += block
            m = self.size // block
            while m & 1 == 0:  # merge equal-sized perfect subtrees at the right edge
                right = self.nodes.pop()
                self.nodes[-1] = self.h.node(self.nodes[-1], right)
                m >>= 1
            i += block

    def root(self) -> Hash:
        if not self.nodes:
            return self.h.empty()
        acc = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            acc = self.h.node(left, acc)
        return acc


def root_of(h: Hasher, leaf_hashes: Iterable[Hash]) -> Hash:
    f = Frontier(h)
    for lh in leaf_hashes:
        f.add(lh)
    return f.root()


# -- a tree that serves proofs ----------------------------------------------------------------


class MerkleTree:
    """Leaf hashes from ``offset`` on, plus the anchor subtrees covering pruned leaves.

    Perfect subtrees never change once complete, so their hashes are memoised: proofs for a
    big tree cost O(log n) hashes after the first request touches each region.
    """

    MEMO_MIN = 64

    def __init__(
        self, h: Hasher, offset: int = 0, anchor: Sequence[Hash] = (), leaves: Sequence[Hash] = ()
    ) -> None:
        self.h = h
        self.offset = offset
        self.known: dict[tuple[int, int], Hash] = dict(zip(decompose(offset), anchor, strict=True))
        self.leaves: list[Hash] = list(leaves)

    @property
    def size(self) -> int:
        return self.offset + len(self.leaves)

    def append(self, leaf_hash: Hash) -> None:
        self.leaves.append(leaf_hash)

    def _hash(self, start: int, end: int) -> Hash:
        """MTH of leaves [start, end)."""
        if (cached := self.known.get((start, end))) is not None:
            return cached
        if end - start == 1:
            if start < self.offset:
                raise InvalidInput(f"leaf {start} has been pruned")
            return self.leaves[start - self.offset]
        k = split_point(end - start)
        value = self.h.node(self._hash(start, start + k), self._hash(start + k, end))
        if end - start >= self.MEMO_MIN and is_pow2(end - start):
            self.known[(start, end)] = value
        return value

    def _check(self, n: int) -> None:
        if not 0 <= n <= self.size:
            raise InvalidInput(f"tree size {n} is beyond the log size {self.size}")

    def root(self, n: int | None = None) -> Hash:
        n = self.size if n is None else n
        self._check(n)
        return self.h.empty() if n == 0 else self._hash(0, n)

    def leaf(self, m: int) -> Hash:
        return self._hash(m, m + 1)

    def subtree(self, start: int, end: int) -> Hash:
        self._check(end)
        return self._hash(start, end)

    def inclusion_proof(self, m: int, n: int) -> list[Hash]:
        """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
        self._check(n)
        if not 0 <= m < n:
            raise InvalidInput(f"index {m} is not in a tree of size {n}")
        return self._path(m, 0, n)

    def _path(self, m: int, start: int, end: int) -> list[Hash]:
        if end - start == 1:
            return []
        k = split_point(end - start)
        if m < start + k:
            return [*self._path(m, start, start + k), self._hash(start + k, end)]
        return [*self._path(m, start + k, end), self._hash(start, start + k)]

    def consistency_proof(self, m: int, n: int) -> list[Hash]:
        """RFC 9162 §2.1.4.1 PROOF(m, D[n])."""
        self._check(n)
        if not 0 <= m <= n:
            raise InvalidInput(f"sizes {m} and {n} are not ordered")
        if m in (0, n):
            return []
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[Hash]:
        n = end - start
        if m == n:
            return [] if whole else [self._hash(start, end)]
        k = split_point(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self._hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._hash(start, start + k)]


# -- verification (§2.1.3.2, §2.1.4.2) ---------------------------------------------------------


def verify_inclusion(
    h: Hasher, index: int, size: int, leaf_hash: Hash, proof: Sequence[Hash], root: Hash
) -> bool:
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = h.node(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = h.node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    h: Hasher, size1: int, size2: int, proof: Sequence[Hash], root1: Hash, root2: Hash
) -> bool:
    if size1 < 0 or size2 < size1:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if size1 == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof:
        return False
    path = [root1, *proof] if is_pow2(size1) else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = h.node(c, fr)
            sr = h.node(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = h.node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0
