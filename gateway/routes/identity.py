"""Departments and their OAuth clients (admin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from exchange.errors import Forbidden, InvalidInput, NotFound
from exchange.identity.assertions import ClientAssertions
from exchange.identity.service import Client, Department, IssuedSecret
from exchange.identity.tokens import Principal
from gateway.access import ANY, access
from gateway.audited import audit_action
from gateway.auth import principal, require, services
from gateway.container import Services

router = APIRouter(prefix="/v1/departments", tags=["departments"])
T = TypeVar("T")


class DepartmentIn(BaseModel):
    id: str = Field(description="Stable id, e.g. 'civil-affairs'", examples=["civil-affairs"])
    name: str = Field(min_length=1, max_length=200)
    parent: str | None = Field(default=None, description="Parent department id")
    level: Literal["region", "city", "county", "township"]


class DepartmentOut(BaseModel):
    id: str
    name: str
    parent: str | None
    level: str


class ClientIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(description="Roles; each is also an OAuth scope")


class ClientOut(BaseModel):
    client_id: str
    department: str
    name: str
    roles: list[str]
    disabled: bool


class ClientSecretOut(BaseModel):
    client_id: str
    client_secret: str = Field(description="Shown once; store it safely")
    roles: list[str]


def _dept(d: Department) -> DepartmentOut:
    return DepartmentOut(id=d.id, name=d.name, parent=d.parent, level=d.level)


def _client(c: Client) -> ClientOut:
    return ClientOut(
        client_id=c.client_id,
        department=c.department,
        name=c.name,
        roles=list(c.roles),
        disabled=c.disabled,
    )


def _secret(i: IssuedSecret) -> ClientSecretOut:
    return ClientSecretOut(
        client_id=i.client.client_id, client_secret=i.client_secret, roles=list(i.client.roles)
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DepartmentOut)
@access("admin")
async def create_department(
    body: DepartmentIn,
    who: Principal = Depends(require("admin")),
    svc: Services = Depends(services),
) -> DepartmentOut:
    d = await run_in_threadpool(
        svc.identity.create_department, body.id, body.name, body.level, body.parent
    )
    await audit_action(svc, who, "admin.department_created", department_id=d.id, level=d.level)
    return _dept(d)


@router.get("", response_model=list[DepartmentOut])
@access(ANY)
async def list_departments(
    _: Principal = Depends(principal), svc: Services = Depends(services)
) -> list[DepartmentOut]:
    return [_dept(d) for d in await run_in_threadpool(svc.identity.list_departments)]


# Admins manage clients, auditors manage auditor clients (exchange.identity.roles): both reach
# these routes; the identity service decides per client and refuses the rest (403, audited).
manager = require("admin", "auditor")


async def _managed(
    req: Request,
    svc: Services,
    who: Principal,
    kind: str,
    client: str,
    dept: str,
    call: Callable[[], T],
) -> T:
    """Run one client-management change; a refusal is audited before the 403/404 goes out."""
    try:
        return await run_in_threadpool(call)
    except (Forbidden, NotFound, InvalidInput) as exc:
        req.state.denial_audited = True  # with its details; gateway.denials adds nothing
        await audit_action(
            svc,
            who,
            "authz.denied",
            outcome="denied",
            method=req.method,
            path=req.url.path,
            action=kind,
            client=client,
            client_department=dept,
            reason=exc.code,
        )
        raise


@router.post("/{dept}/clients", status_code=status.HTTP_201_CREATED, response_model=ClientSecretOut)
@access("admin")
async def create_client(
    dept: str,
    body: ClientIn,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> ClientSecretOut:
    issued = await _managed(
        request,
        svc,
        who,
        "client_created",
        "",
        dept,
        lambda: svc.identity.create_client(dept, body.name, body.roles, by=who.roles),
    )
    await audit_action(
        svc,
        who,
        "admin.client_created",
        client=issued.client.client_id,
        client_department=dept,
        roles=list(issued.client.roles),
    )
    return _secret(issued)


@router.get("/{dept}/clients", response_model=list[ClientOut])
@access("admin", "auditor")
async def list_clients(
    dept: str, _: Principal = Depends(manager), svc: Services = Depends(services)
) -> list[ClientOut]:
    return [_client(c) for c in await run_in_threadpool(svc.identity.list_clients, dept)]


@router.post("/{dept}/clients/{client_id}/rotate", response_model=ClientSecretOut)
@access("admin")
async def rotate_client(
    dept: str,
    client_id: str,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> ClientSecretOut:
    issued = await _managed(
        request,
        svc,
        who,
        "client_rotated",
        client_id,
        dept,
        lambda: svc.identity.rotate_secret(client_id, by=who.roles, department=dept),
    )
    await audit_action(svc, who, "admin.client_rotated", client=client_id)
    return _secret(issued)


async def _set_disabled(
    request: Request, svc: Services, who: Principal, dept: str, client_id: str, disabled: bool
) -> ClientOut:
    verb = "disabled" if disabled else "enabled"
    c = await _managed(
        request,
        svc,
        who,
        f"client_{verb}",
        client_id,
        dept,
        lambda: svc.identity.set_disabled(client_id, disabled, by=who.roles, department=dept),
    )
    await audit_action(svc, who, f"admin.client_{verb}", client=client_id)
    return _client(c)


@router.post("/{dept}/clients/{client_id}/disable", response_model=ClientOut)
@access("admin")
async def disable_client(
    dept: str,
    client_id: str,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> ClientOut:
    return await _set_disabled(request, svc, who, dept, client_id, True)


@router.post("/{dept}/clients/{client_id}/enable", response_model=ClientOut)
@access("admin")
async def enable_client(
    dept: str,
    client_id: str,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> ClientOut:
    return await _set_disabled(request, svc, who, dept, client_id, False)


class RolesIn(BaseModel):
    roles: list[str] = Field(description="The client's new roles (replace the old ones)")


@router.put("/{dept}/clients/{client_id}/roles", response_model=ClientOut)
@access("admin")  # auditors pass the role check but manage auditor clients only
async def set_client_roles(
    dept: str,
    client_id: str,
    body: RolesIn,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> ClientOut:
    c = await _managed(
        request,
        svc,
        who,
        "client_roles_set",
        client_id,
        dept,
        lambda: svc.identity.set_roles(client_id, body.roles, by=who.roles, department=dept),
    )
    await audit_action(svc, who, "admin.client_roles_set", client=client_id, roles=list(c.roles))
    return _client(c)


class ClientKeyIn(BaseModel):
    jwk: dict[str, Any] = Field(
        description="Public JWK (RSA >= 2048 bits, EC P-256 or OKP Ed25519) for "
        "private_key_jwt client authentication (RFC 7523)"
    )


class ClientKeyOut(BaseModel):
    client_id: str
    jwk: dict[str, Any]


@router.put("/{dept}/clients/{client_id}/jwk", response_model=ClientKeyOut)
@access("admin")
async def set_client_key(
    dept: str,
    client_id: str,
    body: ClientKeyIn,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> ClientKeyOut:
    assertions = ClientAssertions(svc.sessions)
    jwk = await _managed(
        request,
        svc,
        who,
        "client_key_set",
        client_id,
        dept,
        lambda: assertions.register_key(client_id, body.jwk, by=who.roles, department=dept),
    )
    await audit_action(svc, who, "admin.client_key_set", client=client_id, kid=jwk.get("kid"))
    return ClientKeyOut(client_id=client_id, jwk=jwk)
