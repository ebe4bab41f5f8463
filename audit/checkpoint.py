"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes, Ed25519.

Body (tlog-checkpoint)::

    <origin>\n<tree size>\n<base64 root hash>\nexchange-audit 1 <hash>\n

The last line is a tlog-checkpoint extension line carrying our format version and the hash
function, so a verifier never guesses which hash built the root. The note is signed as
``— <key name> base64(key id[4] || ed25519 signature)``, key id =
``SHA-256(name || 0x0A || 0x01 || public key)[:4]``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchange.errors import InvalidInput

FORMAT = 1
EXTENSION = "exchange-audit"
_ED25519 = b"\x01"
_DASH = "\u2014"


class BadCheckpoint(InvalidInput):
    code = "bad_checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    hash: str = "sha256"

    def body(self) -> str:
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\n{EXTENSION} {FORMAT} {self.hash}\n"


def _raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, pub: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + _raw(pub)).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A signed-note verifier key: ``<name>+<hex key id>+<base64(0x01 || public key)>``."""

    name: str
    public: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public)

    def encode(self) -> str:
        blob = base64.b64encode(_ED25519 + _raw(self.public)).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        try:
            name, kid, blob = text.strip().split("+", 2)  # names never hold "+"
            raw = base64.b64decode(blob, validate=True)
        except ValueError as exc:
            raise BadCheckpoint("verifier key is malformed") from exc
        if raw[:1] != _ED25519 or len(raw) != 33:
            raise BadCheckpoint("verifier key is not an Ed25519 key")
        v = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if v.key_id.hex() != kid:
            raise BadCheckpoint("verifier key id does not match its key")
        return v


@dataclass(frozen=True)
class Signer:
    name: str
    private: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.private.public_key())

    def sign(self, cp: Checkpoint) -> str:
        body = cp.body()
        sig = self.private.sign(body.encode())
        blob = base64.b64encode(self.verifier.key_id + sig).decode()
        return f"{body}\n{_DASH} {self.name} {blob}\n"


def open_note(note: str, verifier: Verifier) -> Checkpoint:
    """Check the note's signature by ``verifier`` and parse its checkpoint body."""
    body, sep, sigs = note.partition("\n\n")
    if not sep:
        raise BadCheckpoint("checkpoint has no signature block")
    body += "\n"
    if not _signed_by(body, sigs, verifier):
        raise BadCheckpoint(f"checkpoint is not validly signed by {verifier.name}")
    return parse_body(body)


def _signed_by(body: str, sigs: str, v: Verifier) -> bool:
    for line in sigs.splitlines():
        dash, _, rest = line.partition(" ")
        name, _, blob = rest.partition(" ")
        if dash != _DASH or name != v.name:
            continue
        try:
            raw = base64.b64decode(blob, validate=True)
        except ValueError:
            continue
        if raw[:4] != v.key_id:
            continue
        try:
            v.public.verify(raw[4:], body.encode())
            return True
        except InvalidSignature:
            return False
    return False


def parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise BadCheckpoint("checkpoint body is malformed")
    origin, size, root = lines[0], lines[1], lines[2]
    hash_name = "sha256"
    for ext in lines[3:-1]:
        parts = ext.split(" ")
        if parts[0] == EXTENSION and len(parts) == 3:
            if parts[1] != str(FORMAT):
                raise BadCheckpoint(f"unsupported checkpoint format {parts[1]}")
            hash_name = parts[2]
    if not origin or not size.isdigit() or (size != "0" and size.startswith("0")):
        raise BadCheckpoint("checkpoint origin or size is malformed")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except ValueError as exc:
        raise BadCheckpoint("checkpoint root hash is not base64") from exc
    return Checkpoint(origin, int(size), root_hash, hash_name)
