from __future__ import annotations

import hashlib
import hmac

import pytest

from consent.signing import ConsentSigner, artefact_claim, verify_artefact
from exchange.errors import InvalidInput


def test_artefact_verifies_against_the_published_jwks() -> None:
    signer = ConsentSigner(b"k" * 32, "https://exchange.example")
    token = signer.sign({"jti": "cns-1", "purpose": "benefit check"})
    claims = verify_artefact(token, signer.jwks())
    assert claims["jti"] == "cns-1" and claims["ver"] == 2
    assert claims["iss"] == "https://exchange.example"
    assert artefact_claim(token, "purpose") == "benefit check"


def test_same_master_key_same_signing_key_other_key_fails() -> None:
    a, b = ConsentSigner(b"k" * 32, "x"), ConsentSigner(b"k" * 32, "x")
    assert a.jwks() == b.jwks()
    token = a.sign({"jti": "cns-1"})
    with pytest.raises(InvalidInput):
        verify_artefact(token, ConsentSigner(b"z" * 32, "x").jwks())


def test_tampered_artefact_fails() -> None:
    signer = ConsentSigner(b"k" * 32, "x")
    head, body, sig = signer.sign({"jti": "cns-1"}).split(".")
    with pytest.raises(InvalidInput):
        verify_artefact(f"{head}.{body[:-2]}AA.{sig}", signer.jwks())


def test_public_jwks_has_no_private_part() -> None:
    (key,) = ConsentSigner(b"k" * 32, "x").jwks()["keys"]
    assert "d" not in key and key["alg"] == "ES256"


def test_subject_index_and_artefact_subject_are_keyed_and_domain_separated() -> None:
    a, b = ConsentSigner(b"k" * 32, "x"), ConsentSigner(b"z" * 32, "x")
    sid = "110101199003070011"
    assert a.subject_index(sid) != b.subject_index(sid)
    assert a.artefact_subject_of(sid) != b.artefact_subject_of(sid)
    assert a.artefact_subject_of(sid) == ConsentSigner(b"k" * 32, "y").artefact_subject_of(sid)
    # the two keyed hashes use different keys: one never reveals the other
    assert a.artefact_subject_of(sid) != a.subject_index(sid)
    unkeyed = [hashlib.sha256(sid.encode()).hexdigest(), hmac.new(b"", sid.encode(), "sha256")]
    assert a.subject_index(sid) not in (unkeyed[0], unkeyed[1].hexdigest())
