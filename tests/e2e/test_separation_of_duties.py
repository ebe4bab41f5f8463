"""Separation of duties over HTTP (issue 12 item 3): admins cannot mint, rotate, re-key,
enable/disable or re-role auditor clients; only auditors manage auditors; ``auditor`` never
combines with a writing role. Every refusal is a 4xx, audited, and changes nothing."""

from __future__ import annotations

import json
import stat
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from exchange.client import ExchangeClient
from exchange.identity.roles import WRITING_ROLES
from tests.conftest import make_client, make_department
from tests.e2e.test_audit_review import events
from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
DEPTS = "/v1/departments"


def clients_of(officer: ExchangeClient, dept: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = officer.call("GET", f"{DEPTS}/{dept}/clients")
    return found


def can_get_token(gw: ThreadGateway, client_id: str, secret: str) -> bool:
    r = httpx.post(
        f"{gw.url}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return r.status_code == 200


def denials(officer: ExchangeClient, actor: str, action: str, client: str) -> list[Any]:
    found = events(officer, type="authz.denied", client=actor)
    return [e for e in found if e["data"].get("action") == action and e["data"]["client"] == client]


def test_first_auditor_is_written_at_initialisation_to_its_own_file(
    gateway: ThreadGateway, security_officer: ExchangeClient
) -> None:
    path = gateway.home / "auditor-credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = json.loads(path.read_text())
    admin = json.loads((gateway.home / "admin-credentials.json").read_text())
    assert creds["client_id"] != admin["client_id"]
    assert creds["client_secret"] != admin["client_secret"]
    mine = {c["client_id"]: c for c in clients_of(security_officer, "exchange-audit")}
    assert mine[creds["client_id"]]["roles"] == ["auditor"]
    assert security_officer.call("GET", "/v1/audit/checkpoint")


def test_admin_cannot_mint_an_auditor_in_any_department(
    gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient, unique: str
) -> None:
    dept = f"sod-{unique}"
    make_department(admin, dept)
    for where in (dept, "exchange-audit", "exchange-admin"):
        before = clients_of(security_officer, where)
        for roles in (["auditor"], ["auditor", "registry:read"]):
            r = admin.request(
                "POST", f"{DEPTS}/{where}/clients", json={"name": "x", "roles": roles}
            )
            assert r.status_code == 403, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert "client_secret" not in r.text
        assert clients_of(security_officer, where) == before
    assert len(denials(security_officer, admin.client_id, "client_created", "")) >= 6


def test_admin_cannot_touch_the_auditor_client(
    gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient
) -> None:
    creds = json.loads((gateway.home / "auditor-credentials.json").read_text())
    cid, base = creds["client_id"], f"{DEPTS}/exchange-audit/clients/{creds['client_id']}"
    jwk = ECKey.generate_key("P-256", private=False).as_dict()
    attempts = [
        ("client_rotated", "POST", f"{base}/rotate", None),
        ("client_disabled", "POST", f"{base}/disable", None),
        ("client_enabled", "POST", f"{base}/enable", None),
        ("client_roles_set", "PUT", f"{base}/roles", {"roles": ["registry:read"]}),
        ("client_roles_set", "PUT", f"{base}/roles", {"roles": ["admin"]}),
        ("client_key_set", "PUT", f"{base}/jwk", {"jwk": jwk}),
    ]
    before = clients_of(security_officer, "exchange-audit")
    for action, method, path, body in attempts:
        r = admin.request(method, path, json=body)
        assert r.status_code == 403, (action, r.text)
        assert "client_secret" not in r.text
        assert denials(security_officer, admin.client_id, action, cid), action
    # nothing changed: same roles, still enabled, the original secret still works, no key
    assert clients_of(security_officer, "exchange-audit") == before
    assert can_get_token(gateway, cid, creds["client_secret"])
    assert admin.request("GET", "/v1/audit/events").status_code == 403


def test_admin_cannot_re_role_a_client_into_an_auditor(
    gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient, unique: str
) -> None:
    dept = f"rerole-{unique}"
    make_department(admin, dept)
    app = make_client(admin, gateway.url, dept, ["publisher"])
    path = f"{DEPTS}/{dept}/clients/{app.client_id}/roles"
    r = admin.request("PUT", path, json={"roles": ["auditor"]})
    assert r.status_code == 403, r.text
    r = admin.request("PUT", path, json={"roles": ["auditor", "publisher"]})
    assert r.status_code == 422, r.text
    assert [c["roles"] for c in clients_of(admin, dept)] == [["publisher"]]
    assert denials(security_officer, admin.client_id, "client_roles_set", app.client_id)
    # an admin may still re-role within its own line
    assert admin.call("PUT", path, json={"roles": ["subscriber"]})["roles"] == ["subscriber"]
    app.close()


def test_only_auditors_manage_auditors(
    gateway: ThreadGateway, admin: ExchangeClient, security_officer: ExchangeClient, unique: str
) -> None:
    dept = f"office-{unique}"
    make_department(admin, dept)
    second = make_client(security_officer, gateway.url, dept, ["auditor"])
    assert second.call("GET", "/v1/audit/checkpoint")
    base = f"{DEPTS}/{dept}/clients/{second.client_id}"
    rotated = security_officer.call("POST", f"{base}/rotate")
    assert not can_get_token(gateway, second.client_id, second._secret)
    assert can_get_token(gateway, second.client_id, rotated["client_secret"])
    assert security_officer.call("POST", f"{base}/disable")["disabled"] is True
    assert not can_get_token(gateway, second.client_id, rotated["client_secret"])
    assert security_officer.call("POST", f"{base}/enable")["disabled"] is False
    # but an auditor manages nothing else: no writing clients, not the admin's client
    before = clients_of(security_officer, dept)
    r = security_officer.request(
        "POST", f"{DEPTS}/{dept}/clients", json={"name": "x", "roles": ["publisher"]}
    )
    assert r.status_code == 403, r.text
    r = security_officer.request("POST", f"{DEPTS}/exchange-admin/clients/exchange-admin/rotate")
    assert r.status_code == 403, r.text
    r = security_officer.request("PUT", f"{base}/roles", json={"roles": ["publisher"]})
    assert r.status_code == 403, r.text
    assert clients_of(security_officer, dept) == before
    assert denials(security_officer, security_officer.client_id, "client_rotated", "exchange-admin")
    second.close()


@pytest.mark.parametrize("writing", sorted(WRITING_ROLES - {"admin"}))
def test_auditor_never_combines_with_a_writing_role(
    gateway: ThreadGateway,
    admin: ExchangeClient,
    security_officer: ExchangeClient,
    unique: str,
    writing: str,
) -> None:
    dept = f"combo-{unique}"
    make_department(admin, dept)
    for creator in (security_officer, admin):
        r = creator.request(
            "POST", f"{DEPTS}/{dept}/clients", json={"name": "x", "roles": ["auditor", writing]}
        )
        assert r.status_code == 422, r.text
        assert "may not be held together" in r.json()["detail"]
    lone = make_client(security_officer, gateway.url, dept, ["auditor"])
    r = security_officer.request(
        "PUT",
        f"{DEPTS}/{dept}/clients/{lone.client_id}/roles",
        json={"roles": ["auditor", writing]},
    )
    assert r.status_code == 422, r.text
    assert [c["roles"] for c in clients_of(security_officer, dept)] == [["auditor"]]
    assert denials(security_officer, security_officer.client_id, "client_roles_set", lone.client_id)
    lone.close()


def test_admin_can_neither_revoke_nor_introspect_an_auditor_token(
    gateway: ThreadGateway, admin: ExchangeClient, unique: str
) -> None:
    officer = gateway.auditor()
    token = officer.token()
    creds = json.loads((gateway.home / "admin-credentials.json").read_text())
    basic = (creds["client_id"], creds["client_secret"])
    body = httpx.post(f"{gateway.url}/oauth/introspect", data={"token": token}, auth=basic).json()
    assert body == {"active": False}
    r = httpx.post(f"{gateway.url}/oauth/revoke", data={"token": token}, auth=basic)
    assert r.status_code == 200  # RFC 7009: the same answer either way
    assert officer.call("GET", "/v1/audit/checkpoint")  # still valid
    # while an admin still manages (and may revoke) its own line's tokens
    dept = f"rev-{unique}"
    make_department(admin, dept)
    app = make_client(admin, gateway.url, dept, ["publisher"])
    app_token = app.token()
    r = httpx.post(f"{gateway.url}/oauth/introspect", data={"token": app_token}, auth=basic)
    assert r.json()["active"] is True
    httpx.post(f"{gateway.url}/oauth/revoke", data={"token": app_token}, auth=basic)
    r = httpx.get(f"{gateway.url}/v1/departments", headers={"Authorization": f"Bearer {app_token}"})
    assert r.status_code == 401
    officer.close()
    app.close()
