"""Cross-site witnessing of audit checkpoints: C2SP tlog-cosignature lines on a signed note.

A witness (another site) checks a site's signed checkpoint and adds its own signature line::

    — <witness name> base64(key id[4] || timestamp[8, big-endian] || ed25519 signature[64])

over the message ``cosignature/v1\\ntime <timestamp>\\n<checkpoint body>``, key id =
``SHA-256(name || 0x0A || 0x04 || public key)[:4]`` (C2SP tlog-cosignature, Ed25519). The
witness key is the witnessing site's identity key. A site that later rewrites its history —
even re-signing its checkpoints with its own key — cannot change a checkpoint another site
cosigned: ``exchange audit verify`` checks every stored cosigned note's witness signatures and
holds the log to it. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.checkpoint import BadCheckpoint
from audit.merkle import Hasher, split_point, verify_consistency
from exchange.errors import Conflict

_COSIGNATURE = b"\x04"
_DASH = "\u2014"
_TS = struct.Struct(">Q")


def _raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def witness_key_id(name: str, pub: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _COSIGNATURE + _raw(pub)).digest()[:4]


def _message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()


def split(note: str) -> tuple[str, list[str]]:
    """(checkpoint body with its final newline, signature lines)."""
    body, sep, sigs = note.partition("\n\n")
    if not sep:
        raise BadCheckpoint("checkpoint has no signature block")
    return body + "\n", [ln for ln in sigs.splitlines() if ln]


def cosign(note: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    """The cosignature line of witness ``name`` on ``note``'s checkpoint body."""
    body, _ = split(note)
    sig = key.sign(_message(body, timestamp))
    blob = base64.b64encode(witness_key_id(name, key.public_key()) + _TS.pack(timestamp) + sig)
    return f"{_DASH} {name} {blob.decode()}"


def add_line(note: str, line: str) -> str:
    """``note`` with one more signature line (signed notes carry any number)."""
    body, sigs = split(note)
    return body + "\n" + "\n".join([*sigs, line]) + "\n"


@dataclass(frozen=True)
class Witness:
    name: str
    public: Ed25519PublicKey


def cosigned_at(note: str, witness: Witness) -> int | None:
    """The timestamp of ``witness``'s valid cosignature on ``note``, or None if it has none."""
    body, sigs = split(note)
    kid = witness_key_id(witness.name, witness.public)
    for line in sigs:
        dash, _, rest = line.partition(" ")
        name, _, blob = rest.partition(" ")
        if dash != _DASH or name != witness.name:
            continue
        try:
            raw = base64.b64decode(blob, validate=True)
        except ValueError:
            continue
        if len(raw) != 4 + 8 + 64 or raw[:4] != kid:
            continue
        (ts,) = _TS.unpack(raw[4:12])
        try:
            witness.public.verify(raw[12:], _message(body, ts))
        except InvalidSignature:
            return None
        return int(ts)
    return None


# -- consistency between what a witness cosigned and what it is offered (C2SP tlog-witness) --

MAX_PROOF = 64  # PROOF(m, n) has at most log2(n) + 1 hashes: 64 covers any int64 size


class WitnessRefused(Conflict):
    """The offered checkpoint contradicts one we cosigned: a rollback, a fork, a rewritten
    history. An alarm, never a transient error."""

    code = "witness_refused"


class WitnessSizeMismatch(Conflict):
    """The request proves consistency from a size the witness did not cosign last; the
    witness's size is in ``details['size']`` (the caller retries with a proof from it)."""

    code = "witness_size_mismatch"


def proof_length(m: int, n: int) -> int:
    """How many hashes RFC 9162 PROOF(m, D[n]) has (0 < m < n), mirroring §2.1.4.1."""
    if m <= 0 or m >= n:
        return 0
    count, whole = 0, True
    while m != n:
        k = split_point(n)
        if m <= k:
            n = k
        else:
            m, n, whole = m - k, n - k, False
        count += 1
    return count + (0 if whole else 1)


def decode_proof(items: Sequence[object], h: Hasher) -> list[bytes]:
    """Base64 hashes of a consistency proof; :class:`BadCheckpoint` naming the bad one."""
    if len(items) > MAX_PROOF:
        raise BadCheckpoint(f"a consistency proof has at most {MAX_PROOF} hashes, not {len(items)}")
    width = len(h.empty())
    out: list[bytes] = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise BadCheckpoint(f"consistency proof hash {i} is not a base64 string")
        try:
            raw = base64.b64decode(item, validate=True)
        except ValueError:
            raise BadCheckpoint(f"consistency proof hash {i} is not base64") from None
        if len(raw) != width:
            raise BadCheckpoint(
                f"consistency proof hash {i} has {len(raw)} bytes, a {h.name} hash has {width}"
            )
        out.append(raw)
    return out


def check_extends(
    h: Hasher,
    old: tuple[int, bytes],
    new: tuple[int, bytes],
    proof: Sequence[bytes],
    who: str = "the log",
) -> None:
    """The tree ``new`` (size, root) extends ``old``: raises :class:`WitnessRefused` for a
    rollback, a fork or a proof that does not verify, :class:`BadCheckpoint` for a proof of
    the wrong shape (never returns on a contradiction)."""
    (m, old_root), (n, new_root) = old, new
    if m < 0 or n < 0:
        raise BadCheckpoint("tree sizes are never negative")
    if n < m:
        raise WitnessRefused(
            f"{who}'s checkpoint of size {n} is older than the {m} we cosigned (rollback)"
        )
    if n == m:
        if new_root != old_root:
            raise WitnessRefused(f"{who} shows two different logs of size {n} (fork)")
        if proof:
            raise BadCheckpoint("no consistency proof goes between two checkpoints of one size")
        return
    want = proof_length(m, n)
    if len(proof) != want:
        raise BadCheckpoint(
            f"a consistency proof from size {m} to {n} has {want} hashes, this one "
            f"{len(proof)} (truncated or for other sizes)"
        )
    if not verify_consistency(h, m, n, proof, old_root, new_root):
        raise WitnessRefused(
            f"{who}'s checkpoint of size {n} does not extend the one of size {m} we cosigned: "
            "the consistency proof fails (a fork or a rewritten history)"
        )


# -- the request file of the manual hand-over (C2SP tlog-witness add-checkpoint body) --------


def request_text(note: str, old_size: int, proof: Sequence[bytes]) -> str:
    """``old <size>``, one base64 proof hash per line, a blank line, the checkpoint note."""
    lines = [f"old {old_size}", *(base64.b64encode(p).decode() for p in proof)]
    return "\n".join(lines) + "\n\n" + note


def parse_request(text: str) -> tuple[str, int | None, list[str]]:
    """(note, old size, base64 proof hashes) of a request file; a bare note has no old size."""
    if not text.startswith("old "):
        return text, None, []
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise BadCheckpoint("the witness request has no checkpoint after its proof")
    first, *proof = head.split("\n")
    size = first.removeprefix("old ")
    if not size.isdigit() or len(size) > 19:
        raise BadCheckpoint(f"the witness request's old size {size[:20]!r} is not a size")
    return note, int(size), proof
