"""Field-level envelope encryption and key management.

Decisions (see also README "Field-level encryption"):

* **Sealed schema** (:func:`exchange.crypto.sealing.sealed_schema`): every field classified
  sensitive or secret becomes ``"bytes"`` (no default) holding an envelope, keeps its name,
  and gets ``"exchange.sealed": true`` and ``"exchange.original_type": <type JSON>`` (fully
  expanded). The envelope encrypts the Avro binary encoding of the value under the original
  type, so any Avro type works (including null branches of unions). A standard consumer
  decodes the record and sees ciphertext bytes for those fields only. Sealing is defined
  over the schema's types (:func:`exchange.crypto.sealing.sealed_schema_where`): a field of
  a record type is sealed wherever the type occurs — array items, map values, union
  branches, reuse, recursion. Paths and locations: :mod:`exchange.avro_paths`.
* **Envelope v1** (:mod:`exchange.crypto.envelope`): ``0x01 | cipher id | len | DEK id |
  u32 DEK version | 12-byte nonce | ciphertext+tag``; the AAD binds the header, topic, field
  location (path with array indices and map keys), sealed schema id and record key, so a
  moved or altered envelope fails to open.
  Ciphers: AES-256-GCM (id 1, default), SM4-GCM (id 2; ``cryptography`` with OpenSSL's SM4).
* **Keys** (:mod:`exchange.crypto.keys`): one DEK family per topic + field, numbered
  versions, each DEK wrapped by the owning department's KEK in the KMS and stored wrapped in
  ``crypto_dek_versions``. Unwrapped DEKs live only in memory: :class:`CachingKms` (bounded,
  5 min TTL) and the key manager's ready keys (bounded, 60 s). Another gateway instance
  notices a shred or rotation within those 60 s; the instance that performs it at once.
  Rotation by age/use count or on demand; KEK rotation re-wraps DEKs; shredding deletes the
  wrapped DEK (tombstone row kept). Audited: key.created, key.rotated, key.shredded,
  kek.created, kek.rotated.
* **Delivery** (:meth:`FieldCrypto.open`): not-granted sealed fields are *omitted*; shredded
  → ``None`` + redacted "shredded"; failed authentication → ``None`` + redacted "integrity".
* **KMS** (:mod:`exchange.crypto.kms`): providers memory (tests), local keystore file sealed
  with the master key, PKCS#11; wrappers for caching and metrics.
"""

from exchange.crypto.factory import build_field_crypto
from exchange.crypto.fields import FieldCrypto, OpenedRecord
from exchange.crypto.keys import KeyInfo, KeyManager, RotationPolicy
from exchange.crypto.sealing import sealed_fields, sealed_schema

__all__ = [
    "FieldCrypto",
    "KeyInfo",
    "KeyManager",
    "OpenedRecord",
    "RotationPolicy",
    "build_field_crypto",
    "sealed_fields",
    "sealed_schema",
]
