"""FirstRow (the token's liveness read on a pooled DBAPI connection) answers as SQLAlchemy's
own execution of the same statement does, on a real SQLite control-plane database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, exists, select

from exchange.db import FirstRow, make_engine, migrate, session_factory, transaction
from exchange.errors import DependencyUnavailable
from exchange.identity.models import ClientRow, RevokedTokenRow
from exchange.identity.service import IdentityService

LIVE = select(
    ClientRow.disabled,
    exists().where(RevokedTokenRow.jti == bindparam("jti")).label("revoked"),
).where(ClientRow.client_id == bindparam("client_id"))


def test_the_same_rows_as_sqlalchemy_for_every_state(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    identity = IdentityService(sessions)
    identity.create_department("civil", "Civil", "city")
    live = identity.create_client("civil", "a", ["publisher"], by=["admin"]).client.client_id
    off = identity.create_client("civil", "b", ["publisher"], by=["admin"]).client.client_id
    identity.set_disabled(off, True, by=["admin"])
    with transaction(sessions) as s:
        s.add(RevokedTokenRow(jti="gone", expires_at=2**40))
    fast = FirstRow(LIVE)

    def general(params: dict[str, Any]) -> Any:
        with engine.connect() as conn:
            return conn.execute(LIVE, params).first()

    for cid in (live, off, "nobody"):
        for jti in ("gone", "fine"):
            params = {"jti": jti, "client_id": cid}
            want, got = general(params), fast.first(sessions, params)
            assert (want is None) == (got is None), params
            if want is not None:
                assert (bool(got.disabled), bool(got.revoked)) == (want.disabled, want.revoked)
    assert fast.first(sessions, {"jti": "gone", "client_id": off}).disabled
    engine.dispose()
    (tmp_path / "c.db").unlink()
    (tmp_path / "c.db").mkdir()  # the file is gone and cannot be created: a 503, not a 500
    with pytest.raises(DependencyUnavailable):
        fast.first(sessions, {"jti": "x", "client_id": live})


def test_only_boolean_and_integer_columns() -> None:
    with pytest.raises(TypeError, match="client_id"):
        FirstRow(select(ClientRow.client_id))
