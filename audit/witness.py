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
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.checkpoint import BadCheckpoint

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
