"""Envelope v1: the bytes a sealed field carries. Pure functions, no I/O.

Layout (big-endian)::

    offset   size  field
    0        1     format version = 0x01
    1        1     cipher id (1 = AES-256-GCM, 2 = SM4-GCM)
    2        1     L = length of the DEK id (1..64)
    3        L     DEK id (ASCII)
    3+L      4     DEK version (uint32)
    7+L      12    nonce (random per envelope)
    19+L     n+16  ciphertext of the field's Avro binary encoding, then the GCM tag

The header is bytes ``[0, 19+L)``. The AEAD associated data is::

    header | u16 len(topic) | topic | u16 len(path) | path | u32 sealed schema id
           | u32 len(key) | key            (utf-8 strings; key = Kafka record key or empty)

so an envelope copied to another record (key), field (path), topic or schema fails to open,
and no header byte (cipher, DEK id/version, nonce) can be altered.

``path`` is the field's *location* in the record (:mod:`exchange.avro_paths`): its dotted path
with array indices and map keys (``children[0].v``, ``m["k"].x``), so an envelope also cannot
move between occurrences of one field inside containers (brackets cannot occur in Avro names
and map keys are JSON-quoted, so a location never spells another field's path). For every
field outside an array or map the location is the dotted path itself, byte for byte what v1
bound before sealing reached into containers; the AAD's layout is unchanged, so this is still
format v1 and every envelope written before opens as it did.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from exchange.crypto import ciphers
from exchange.crypto.ciphers import NONCE_BYTES, CipherSpec
from exchange.crypto.errors import IntegrityFailure

FORMAT_V1 = 0x01
MAX_DEK_ID = 64
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Context:
    """Where a sealed value lives; bound into the AEAD so it cannot be moved."""

    topic: str
    path: str
    schema_id: int
    key: bytes | None

    def encode(self) -> bytes:
        return context_bytes(self.topic, self.path, self.schema_id, self.key)


def context_bytes(topic: str, path: str, schema_id: int, key: bytes | None) -> bytes:
    """``Context(...).encode()`` without building the object (the hot path)."""
    key = key or b""
    return _fixed(topic, path, schema_id) + _U32.pack(len(key)) + key


def context_prefix(topic: str, path: str, schema_id: int) -> bytes:
    """The part of the context before the record key: ``context_bytes`` is this, then
    u32 len(key) and the key."""
    return _fixed(topic, path, schema_id)


@lru_cache(maxsize=4096)
def _fixed(topic: str, path: str, schema_id: int) -> bytes:
    t, p = topic.encode(), path.encode()
    return struct.pack(">H", len(t)) + t + struct.pack(">H", len(p)) + p + _U32.pack(schema_id)


class Header(NamedTuple):  # a NamedTuple: built for every field opened, so cheap to make
    cipher: CipherSpec
    dek_id: str
    dek_version: int
    nonce: bytes
    raw: bytes  # the exact header bytes, authenticated as part of the AAD


def prefix(cipher: CipherSpec, dek_id: str, version: int) -> bytes:
    """The header without its nonce: fixed per DEK version, so computed once per DEK."""
    did = dek_id.encode("ascii")
    if not 0 < len(did) <= MAX_DEK_ID:
        raise ValueError("DEK id must be 1..64 ASCII bytes")
    return bytes((FORMAT_V1, cipher.id, len(did))) + did + _U32.pack(version)


def seal_with(aead: ciphers.Aead, head: bytes, ctx: bytes, plaintext: bytes) -> bytes:
    """Seal under a prepared AEAD, header prefix and encoded context (the hot path)."""
    nonce = os.urandom(NONCE_BYTES)  # the same CSPRNG as ``secrets``
    header = head + nonce
    return header + aead.encrypt(nonce, plaintext, header + ctx)


def seal(
    cipher: CipherSpec, key: bytes, dek_id: str, version: int, ctx: Context, plaintext: bytes
) -> bytes:
    head = prefix(cipher, dek_id, version)
    return seal_with(ciphers.aead_for(cipher, key), head, ctx.encode(), plaintext)


def parse(envelope: bytes) -> tuple[Header, bytes]:
    """Split an envelope into its header and sealed body; raises IntegrityFailure if malformed."""
    if len(envelope) < 3 or envelope[0] != FORMAT_V1:
        raise IntegrityFailure("not an envelope of a known format")
    cipher = ciphers.spec_of(envelope[1])
    n = envelope[2]
    end = 3 + n + 4 + NONCE_BYTES
    if n == 0 or n > MAX_DEK_ID or len(envelope) < end + ciphers.TAG_BYTES:
        raise IntegrityFailure("envelope is truncated")
    try:
        dek_id = envelope[3 : 3 + n].decode("ascii")
    except UnicodeDecodeError:
        raise IntegrityFailure("envelope DEK id is malformed") from None
    (version,) = _U32.unpack_from(envelope, 3 + n)
    nonce = envelope[3 + n + 4 : end]
    return Header(cipher, dek_id, version, nonce, envelope[:end]), envelope[end:]


def open_(header: Header, body: bytes, key: bytes, ctx: Context) -> bytes:
    return open_with(ciphers.aead_for(header.cipher, key), header, body, ctx.encode())


def open_with(aead: ciphers.Aead, header: Header, body: bytes, ctx: bytes) -> bytes:
    """Open under a prepared AEAD and encoded context (the hot path)."""
    return ciphers.decrypt_with(aead, header.nonce, body, header.raw + ctx)
