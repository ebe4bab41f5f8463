"""TokenService against a real SQLite control plane: rotation across instances, revocation,
disabled clients. Two services on one database stand in for two gateway replicas."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from joserfc import jws

from exchange.db import make_engine, migrate, session_factory
from exchange.errors import DependencyUnavailable, InvalidInput
from exchange.identity.service import SYSTEM, IdentityService
from exchange.identity.tokens import InvalidToken, TokenService

ISSUER, AUDIENCE = "http://127.0.0.1:1", "exchange"


@pytest.fixture
def replicas(tmp_path: Path) -> tuple[IdentityService, TokenService, TokenService]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    master = secrets.token_bytes(32)

    def replica() -> TokenService:
        # key_reload_seconds=0: each call sees the other replica's rotation (no waiting).
        return TokenService(
            sessions, master, issuer=ISSUER, audience=AUDIENCE, key_reload_seconds=0
        )

    a, b = replica(), replica()
    a.ensure_signing_key()
    identity = IdentityService(sessions)
    identity.create_department("tax", "Tax", "city")
    return identity, a, b


def kid(token: str) -> str:
    return str(jws.extract_compact(token.encode()).headers()["kid"])


def test_rotation_on_one_replica_is_used_and_trusted_by_the_other(
    replicas: tuple[IdentityService, TokenService, TokenService],
) -> None:
    identity, a, b = replicas
    client = identity.create_client("tax", "app", ["publisher"], by=SYSTEM).client
    before = b.issue(client, None).access_token
    new_kid = a.rotate_signing_key()
    after = b.issue(client, None).access_token
    assert kid(after) == new_kid != kid(before)
    for replica in (a, b):
        assert replica.verify(before).client_id == client.client_id  # overlap
        assert replica.verify(after).client_id == client.client_id
    assert {new_kid, kid(before)} <= {k["kid"] for k in b.jwks()["keys"]}


def test_revoked_and_disabled(replicas: tuple[IdentityService, TokenService, TokenService]) -> None:
    identity, a, b = replicas
    client = identity.create_client("tax", "app", ["subscriber"], by=SYSTEM).client
    t1, t2 = a.issue(client, None).access_token, a.issue(client, None).access_token
    a.revoke(t1)
    with pytest.raises(InvalidToken, match="revoked"):
        b.verify(t1)
    assert b.verify(t2).roles == {"subscriber"}
    identity.set_disabled(client.client_id, True, by=SYSTEM)
    with pytest.raises(InvalidToken, match="disabled"):
        b.verify(t2)
    assert b.introspect(t2) == {"active": False}


def test_no_active_key_is_a_dependency_failure(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    tokens = TokenService(sessions, secrets.token_bytes(32), issuer=ISSUER, audience=AUDIENCE)
    IdentityService(sessions).create_department("tax", "Tax", "city")
    client = IdentityService(sessions).create_client("tax", "app", ["publisher"], by=SYSTEM).client
    with pytest.raises(DependencyUnavailable):
        tokens.issue(client, None)


def test_client_ids_fit_their_column_and_never_look_external(
    replicas: tuple[IdentityService, TokenService, TokenService],
) -> None:
    identity, _, _ = replicas
    long_dept = "d" * 63
    identity.create_department(long_dept, "Long", "city")
    cid = identity.create_client(long_dept, "app", ["publisher"], by=SYSTEM).client.client_id
    assert len(cid) <= 63 and ":" not in cid
    with pytest.raises(InvalidInput):
        identity.create_client("tax", "app", ["publisher"], client_id="oidc:dept-portal", by=SYSTEM)
