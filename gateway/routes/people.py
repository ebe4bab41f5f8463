"""People accounts over the API (``exchange people ...``): the same operations as the console's
people page (gateway/console/routes/people.py), for scripts and the CLI.

Admins manage people, auditors manage auditor people (:func:`exchange.identity.roles.
may_manage`): both pass the role check, the people service decides per person and refuses the
rest (403, audited). A new person's first password is in the creation answer, once. Disabling a
person or resetting their second factor signs them out of the console everywhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from exchange.errors import Forbidden, InvalidInput, NotFound
from exchange.identity.people import Person
from exchange.identity.tokens import Principal
from gateway.access import access
from gateway.audited import audit_action
from gateway.auth import require, services
from gateway.container import Services

router = APIRouter(prefix="/v1/people", tags=["people"])
manager = require("admin", "auditor")
T = TypeVar("T")


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=2, max_length=63, examples=["li.wei"])
    department: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200, description="Display name")
    roles: list[str] = Field(max_length=20, description="The same role names as clients'")


class PersonOut(BaseModel):
    login: str
    department: str
    name: str
    roles: list[str]
    disabled: bool
    totp_enrolled: bool


class NewPersonOut(PersonOut):
    password: str = Field(description="The first password, shown once; hand it over safely")


def _out(p: Person) -> PersonOut:
    return PersonOut(
        login=p.login,
        department=p.department,
        name=p.name,
        roles=list(p.roles),
        disabled=p.disabled,
        totp_enrolled=p.totp_enrolled,
    )


# -- the two changes, shared with the console's people page ------------------------------------
PERSON_CHANGES = ("disable", "enable", "reset-totp")


async def make_person(
    svc: Services, who: Principal, department: str, login: str, name: str, roles: list[str]
) -> tuple[Person, str]:
    """Create a person with a fresh first password (returned once; the person changes it at
    /console/account); audited. Raises the people service's ``ExchangeError``s."""
    password = secrets.token_urlsafe(15)
    p = await run_in_threadpool(
        lambda: svc.people.create(department, login, name, password, roles, by=who.roles)
    )
    await audit_action(
        svc, who, "admin.person_created", person=login, person_department=department,
        roles=roles,
    )  # fmt: skip
    return p, password


async def apply_change(svc: Services, who: Principal, login: str, action: str) -> Person:
    """Apply one of :data:`PERSON_CHANGES` to a person (another action: ``KeyError``). Unless
    enabling, the person's console sessions end at once; audited with how many ended."""
    changes: dict[str, Callable[[], Person]] = {
        "disable": lambda: svc.people.set_disabled(login, True, by=who.roles),
        "enable": lambda: svc.people.set_disabled(login, False, by=who.roles),
        "reset-totp": lambda: svc.people.reset_totp(login, by=who.roles),
    }
    p = await run_in_threadpool(changes[action])
    ended = 0
    if action != "enable":  # a disabled person, or one without a second factor, is signed out
        ended = await run_in_threadpool(svc.console_sessions.end_all, login)
    await audit_action(
        svc, who, f"admin.person_{action.replace('-', '_')}", person=login, sessions=ended
    )
    return p


async def _managed(
    request: Request,
    svc: Services,
    who: Principal,
    action: str,
    login: str,
    call: Callable[[], Awaitable[T]],
) -> T:
    """Run one change; a refusal is audited before the 403/404/422 goes out."""
    try:
        return await call()
    except (Forbidden, NotFound, InvalidInput) as exc:
        request.state.denial_audited = True  # with its details; gateway.denials adds nothing
        await audit_action(
            svc,
            who,
            "authz.denied",
            "denied",
            method=request.method,
            path=request.url.path,
            action=action,
            person=login,
            reason=exc.code,
        )
        raise


@router.get("", response_model=list[PersonOut])
@access("admin", "auditor")
async def list_people(
    department: str | None = Query(None, min_length=1, max_length=64),
    _: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> list[PersonOut]:
    """Every person (or one department's); never a password or second-factor secret."""
    return [_out(p) for p in await run_in_threadpool(svc.people.list, department)]


# Declared for admins: auditors pass the role check but create auditor people only.
@router.post("", status_code=status.HTTP_201_CREATED, response_model=NewPersonOut)
@access("admin")
async def create_person(
    body: PersonIn,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> NewPersonOut:
    login = body.login.lower()
    p, password = await _managed(
        request, svc, who, "person_created", login,
        lambda: make_person(svc, who, body.department, login, body.name, body.roles),
    )  # fmt: skip
    return NewPersonOut(**_out(p).model_dump(), password=password)


async def _change(
    request: Request, svc: Services, who: Principal, login: str, action: str
) -> PersonOut:
    p = await _managed(
        request, svc, who, f"person_{action}", login, lambda: apply_change(svc, who, login, action)
    )
    return _out(p)


@router.post("/{login}/disable", response_model=PersonOut)
@access("admin")
async def disable_person(
    login: str,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> PersonOut:
    """The person can no longer sign in; their console sessions end at once."""
    return await _change(request, svc, who, login, "disable")


@router.post("/{login}/enable", response_model=PersonOut)
@access("admin")
async def enable_person(
    login: str,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> PersonOut:
    return await _change(request, svc, who, login, "enable")


@router.post("/{login}/reset-totp", response_model=PersonOut)
@access("admin")
async def reset_person_totp(
    login: str,
    request: Request,
    who: Principal = Depends(manager),
    svc: Services = Depends(services),
) -> PersonOut:
    """The person enrols a new authenticator at the next sign-in; signed out everywhere now."""
    return await _change(request, svc, who, login, "reset-totp")
