"""Consent artefacts: compact JWS (ES256) signed by the exchange, verifiable by anyone with
the JWKS at ``GET /v1/consents/jwks``.

The signing key is derived from the installation master key (HKDF), so every gateway replica
sharing the master key signs with the same key and nothing new is stored. Rotating it means
rotating the master key; old artefacts then verify only against a JWKS saved beforehand.
The subject index key (a keyed hash to find consents by subject) is derived the same way, and
so is the key of the artefact's ``sub_hash``: an HMAC, so an artefact names its subject only to
the exchange — nobody holding one can enumerate ids against it (format 1 carried
``SHA-256(visible salt || id)``, which anyone could; see ``Consents.upgrade_artefacts``).
Each key has its own HKDF ``info`` label, so no two uses share a key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from exchange.errors import InvalidInput

ARTEFACT_FORMAT = 2  # claim "ver": bump when the artefact's claims change meaning
ARTEFACT_TYP = "consent+jws"
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def _derive(master_key: bytes, info: str, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt=None, info=info.encode()).derive(master_key)


class ConsentSigner:
    def __init__(self, master_key: bytes, issuer: str) -> None:
        scalar = int.from_bytes(_derive(master_key, "exchange/consent-artefact/es256/v1", 48))
        private = ec.derive_private_key(scalar % (_P256_ORDER - 1) + 1, ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        probe = ECKey.import_key(pem)
        self.kid = f"consent-{probe.thumbprint()[:16]}"
        self._key = ECKey.import_key(pem, {"kid": self.kid, "use": "sig", "alg": "ES256"})
        self._index_key = _derive(master_key, "exchange/consent-subject-index/v1", 32)
        self._artefact_subject_key = _derive(master_key, "exchange/consent-artefact-subject/v2", 32)
        self.issuer = issuer

    def subject_index(self, subject: str) -> str:
        """Keyed hash used to look consents up; useless without the master key."""
        return hmac.new(self._index_key, subject.encode(), hashlib.sha256).hexdigest()

    def artefact_subject(self, subject_index: str) -> str:
        """The artefact's ``sub_hash``: keyed, and computed from the stored subject index so
        later versions (and re-signed old ones) carry it without the raw id."""
        mac = hmac.new(self._artefact_subject_key, subject_index.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def artefact_subject_of(self, subject: str) -> str:
        """``sub_hash`` for a raw subject id: lets the exchange tell whether an artefact is
        about a given subject."""
        return self.artefact_subject(self.subject_index(subject))

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "ES256", "kid": self.kid, "typ": ARTEFACT_TYP}
        body = {"iss": self.issuer, "ver": ARTEFACT_FORMAT, **claims}
        payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return jws.serialize_compact(header, payload, self._key)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._key.as_dict(private=False))]}


def verify_artefact(artefact: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The claims of a consent artefact whose signature checks out against ``jwks``."""
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        obj = jws.deserialize_compact(artefact, keys, algorithms=["ES256"])
    except (JoseError, ValueError) as exc:
        raise InvalidInput("consent artefact signature or format is invalid") from exc
    if obj.protected.get("typ") != ARTEFACT_TYP:
        raise InvalidInput("not a consent artefact")
    claims: dict[str, Any] = json.loads(obj.payload)
    return claims


def artefact_claims(artefact: str) -> dict[str, Any]:
    """The claims of an artefact we signed ourselves (read back from our own store)."""
    payload = artefact.split(".")[1]
    body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return body


def artefact_claim(artefact: str, name: str) -> Any:
    """One claim of an artefact we signed ourselves."""
    return artefact_claims(artefact).get(name)
