"""TokenService against a real SQLite control plane: rotation across instances, revocation,
disabled clients, and the remembered signatures (same answers, expiry, revocation, disabling
and key retirement still enforced). Two services on one database stand in for two gateway
replicas."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from sqlalchemy import select

from exchange.db import make_engine, migrate, session_factory, transaction
from exchange.errors import DependencyUnavailable, InvalidInput
from exchange.identity import tokens as tokens_module
from exchange.identity.models import SigningKeyRow
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


@pytest.fixture
def remembering(tmp_path: Path) -> tuple[IdentityService, TokenService, TokenService]:
    """Two replicas that reload their key sets rarely, so verified signatures are remembered."""
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    master = secrets.token_bytes(32)
    a, b = (
        TokenService(sessions, master, issuer=ISSUER, audience=AUDIENCE, key_reload_seconds=600)
        for _ in range(2)
    )
    a.ensure_signing_key()
    identity = IdentityService(sessions)
    identity.create_department("tax", "Tax", "city")
    return identity, a, b


class CountingDecode:
    """Counts the signature checks (jwt.decode) a TokenService makes; they still run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = tokens_module.jwt.decode

        def decode(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(tokens_module.jwt, "decode", decode)


def test_a_remembered_signature_gives_the_same_principal_and_is_not_checked_again(
    remembering: tuple[IdentityService, TokenService, TokenService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity, a, _ = remembering
    client = identity.create_client("tax", "app", ["publisher"], by=SYSTEM).client
    token = a.issue(client, None).access_token
    counted = CountingDecode(monkeypatch)
    first, second = a.verify(token), a.verify(token)
    assert first == second and first.client_id == client.client_id
    assert counted.calls == 1
    # Any other byte string is checked on its own: a forged signature or claim is refused.
    head, body, sig = token.split(".")
    forged_sig = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
    for forged in (f"{head}.{body}.{forged_sig}", f"{head}.{body[:-2]}xx.{sig}"):
        with pytest.raises(InvalidToken):
            a.verify(forged)
    assert counted.calls == 3
    assert a.verify(token) == first


def test_revocation_and_disabling_stop_a_remembered_token_at_once(
    remembering: tuple[IdentityService, TokenService, TokenService],
) -> None:
    identity, a, b = remembering
    client = identity.create_client("tax", "app", ["subscriber"], by=SYSTEM).client
    t1, t2 = a.issue(client, None).access_token, a.issue(client, None).access_token
    assert b.verify(t1).roles == b.verify(t2).roles == {"subscriber"}  # both remembered
    a.revoke(t1)  # on the other replica
    with pytest.raises(InvalidToken, match="revoked"):
        b.verify(t1)
    identity.set_disabled(client.client_id, True, by=SYSTEM)
    with pytest.raises(InvalidToken, match="disabled"):
        b.verify(t2)
    identity.set_disabled(client.client_id, False, by=SYSTEM)
    assert b.verify(t2).roles == {"subscriber"}


def test_a_remembered_token_still_expires(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    tokens = TokenService(
        sessions,
        secrets.token_bytes(32),
        issuer=ISSUER,
        audience=AUDIENCE,
        ttl_seconds=1,
        leeway_seconds=0,
        key_reload_seconds=600,
    )
    tokens.ensure_signing_key()
    identity = IdentityService(sessions)
    identity.create_department("tax", "Tax", "city")
    client = identity.create_client("tax", "app", ["publisher"], by=SYSTEM).client
    issued = tokens.issue(client, None)
    assert tokens.verify(issued.access_token).client_id == client.client_id
    deadline = time.monotonic() + 10
    while time.time() <= issued.claims["exp"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(InvalidToken, match="exp"):
        tokens.verify(issued.access_token)


def test_a_remembered_token_of_a_retired_key_stops_at_the_next_key_reload(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    tokens = TokenService(
        sessions, secrets.token_bytes(32), issuer=ISSUER, audience=AUDIENCE, key_reload_seconds=0.2
    )
    tokens.ensure_signing_key()
    identity = IdentityService(sessions)
    identity.create_department("tax", "Tax", "city")
    client = identity.create_client("tax", "app", ["publisher"], by=SYSTEM).client
    old = tokens.issue(client, None).access_token
    assert tokens.verify(old).client_id == client.client_id
    tokens.rotate_signing_key()
    with transaction(sessions) as s:  # the old key's last tokens have expired
        for row in s.scalars(select(SigningKeyRow).where(SigningKeyRow.status == "retired")):
            row.retire_after = datetime.now(UTC) - timedelta(seconds=1)
    time.sleep(0.3)  # past the key reload
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify(old)
