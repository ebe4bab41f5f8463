"""Who a refused request claimed to be, read without trusting anything it sent."""

from __future__ import annotations

import base64
import json

from gateway.denials import unverified_basic_id, unverified_jwt_id


def jwt(claims: object) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_claimed_client_id_then_azp_then_sub() -> None:
    assert unverified_jwt_id(jwt({"client_id": "civil-ab12", "sub": "x"})) == "civil-ab12"
    assert unverified_jwt_id(jwt({"azp": "portal", "sub": "u1"})) == "portal"
    assert unverified_jwt_id(jwt({"sub": "u1"})) == "u1"


def test_garbage_gives_nothing() -> None:
    for token in ("", "a.b", "a.b.c", jwt(["list"]), jwt({"client_id": 5}), "x" * 20000):
        assert unverified_jwt_id(token) is None


def test_claims_that_could_forge_log_lines_are_refused() -> None:
    assert unverified_jwt_id(jwt({"client_id": "a\nb"})) is None
    assert unverified_jwt_id(jwt({"client_id": "x" * 200})) is None
    assert unverified_jwt_id(jwt({"client_id": "<script>"})) is None


def test_basic_credentials_give_the_client_id_only() -> None:
    raw = base64.b64encode(b"civil-ab12:s3cret").decode()
    assert unverified_basic_id(raw) == "civil-ab12"
    assert unverified_basic_id("!!!") is None
    assert unverified_basic_id(base64.b64encode(b"no-colon").decode()) is None
