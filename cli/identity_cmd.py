"""``exchange departments``, ``clients`` and ``people``: who may use the exchange (admin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from cli.connect import Session, connected
from exchange.identity.roles import ALL_ROLES
from exchange.profiles import Profile, ProfileStore

departments_app = typer.Typer(help="Departments (admin).", no_args_is_help=True)
clients_app = typer.Typer(help="A department's OAuth clients (admin).", no_args_is_help=True)

LEVELS = ("region", "city", "county", "township")
ROLE_HELP = "Role; repeat for more: " + ", ".join(sorted(ALL_ROLES))
DEPT_COLUMNS = ("id", "name", "level", "parent")
CLIENT_COLUMNS = ("client_id", "department", "name", "roles", "disabled")


def _p(part: str) -> str:
    return quote(part, safe="")


@departments_app.command("list")
@connected()
def departments_list(cx: Session) -> None:
    """Every department."""
    cx.emit(cx.call("GET", "/v1/departments"), DEPT_COLUMNS)


@departments_app.command("create")
@connected()
def departments_create(
    cx: Session,
    department_id: str = typer.Argument(..., metavar="ID", help="Stable id, e.g. civil-affairs"),
    name: str = typer.Option(..., "--name", help="Display name"),
    level: str = typer.Option(..., "--level", help="One of: " + ", ".join(LEVELS)),
    parent: str | None = typer.Option(None, "--parent", help="Parent department id"),
) -> None:
    """Create a department."""
    body = {"id": department_id, "name": name, "level": level, "parent": parent}
    cx.emit(cx.call("POST", "/v1/departments", json=body))


@departments_app.command("show")
@connected()
def departments_show(cx: Session, department_id: str = typer.Argument(..., metavar="ID")) -> None:
    """One department."""
    found = [d for d in cx.call("GET", "/v1/departments") if d["id"] == department_id]
    if not found:
        cx.fail(f"no department {department_id!r}", "`exchange departments list` shows them")
    cx.emit(found[0])


@clients_app.command("list")
@connected()
def clients_list(cx: Session, department: str) -> None:
    """A department's clients (never their secrets)."""
    cx.emit(cx.call("GET", f"/v1/departments/{_p(department)}/clients"), CLIENT_COLUMNS)


SaveOpt = typer.Option(
    None, "--save-profile", help="Save the new secret as this profile instead of printing it"
)


def _issued(cx: Session, issued: dict[str, Any], save: str | None) -> None:
    if save:
        store = ProfileStore.load()
        store.put(Profile(save, cx.target().url, issued["client_id"], issued["client_secret"]))
        store.save()
        shown = {k: v for k, v in issued.items() if k != "client_secret"}
        cx.emit({**shown, "profile": save, "file": str(store.path)})
        return
    cx.emit(issued)
    if not cx.json:
        cx.note("the secret is shown once: store it now (or use --save-profile NAME)")


@clients_app.command("create")
@connected()
def clients_create(
    cx: Session,
    department: str,
    name: str = typer.Option(..., "--name", help="What the client is for"),
    roles: list[str] = typer.Option(..., "--role", help=ROLE_HELP),
    save_profile: str | None = SaveOpt,
) -> None:
    """Create a client; its secret is shown once (or saved with --save-profile)."""
    body = {"name": name, "roles": roles}
    _issued(
        cx, cx.call("POST", f"/v1/departments/{_p(department)}/clients", json=body), save_profile
    )


@clients_app.command("rotate")
@connected()
def clients_rotate(
    cx: Session, department: str, client_id: str, save_profile: str | None = SaveOpt
) -> None:
    """Issue a new secret (the old one stops working)."""
    path = f"/v1/departments/{_p(department)}/clients/{_p(client_id)}/rotate"
    _issued(cx, cx.call("POST", path), save_profile)


def _switch(verb: str) -> Any:
    @connected()
    def command(cx: Session, department: str, client_id: str) -> None:
        path = f"/v1/departments/{_p(department)}/clients/{_p(client_id)}/{verb}"
        cx.emit(cx.call("POST", path), CLIENT_COLUMNS)

    command.__doc__ = f"{verb.title()} a client (its tokens stop or start working)."
    return command


clients_app.command("disable")(_switch("disable"))
clients_app.command("enable")(_switch("enable"))


@clients_app.command("roles")
@connected()
def clients_roles(
    cx: Session,
    department: str,
    client_id: str,
    roles: list[str] = typer.Option(..., "--role", help=ROLE_HELP),
) -> None:
    """Replace a client's roles."""
    path = f"/v1/departments/{_p(department)}/clients/{_p(client_id)}/roles"
    cx.emit(cx.call("PUT", path, json={"roles": roles}), CLIENT_COLUMNS)


@clients_app.command("set-key")
@connected()
def clients_set_key(
    cx: Session,
    department: str,
    client_id: str,
    jwk_file: Path = typer.Argument(..., help="Public JWK (JSON) for private_key_jwt"),
) -> None:
    """Register a public key so the client can sign in with private_key_jwt (RFC 7523)."""
    try:
        jwk = json.loads(jwk_file.read_text())
    except ValueError as exc:
        cx.fail(f"{jwk_file} is not JSON: {exc}")
    path = f"/v1/departments/{_p(department)}/clients/{_p(client_id)}/jwk"
    cx.emit(cx.call("PUT", path, json={"jwk": jwk}))


# -- people: console sign-in accounts (the API's /v1/people) ---------------------------------
people_app = typer.Typer(
    help="People: staff who sign in to the console (admin; auditors manage auditor people).",
    no_args_is_help=True,
)
PERSON_COLUMNS = ("login", "department", "name", "roles", "disabled", "totp_enrolled")


@people_app.command("list")
@connected()
def people_list(
    cx: Session,
    department: str | None = typer.Option(None, "--department", help="Only this department"),
) -> None:
    """People accounts (never a password or second-factor secret)."""
    params = {"department": department} if department else None
    cx.emit(cx.call("GET", "/v1/people", params=params), PERSON_COLUMNS)


@people_app.command("create")
@connected()
def people_create(
    cx: Session,
    department: str,
    login: str = typer.Argument(..., help="Sign-in name: 2-63 of a-z, 0-9, '.', '_', '-'"),
    name: str = typer.Option(..., "--name", help="Display name"),
    roles: list[str] = typer.Option(..., "--role", help=ROLE_HELP),
) -> None:
    """Create a person; their first password is shown once (admin and auditor people enrol a
    second factor at their first sign-in)."""
    body = {"login": login, "department": department, "name": name, "roles": roles}
    cx.emit(cx.call("POST", "/v1/people", json=body))
    if not cx.json:
        cx.note("the first password is shown once: hand it over safely")


def _person_action(action: str, doc: str) -> Any:
    @connected()
    def command(cx: Session, login: str) -> None:
        cx.emit(cx.call("POST", f"/v1/people/{_p(login)}/{action}"), PERSON_COLUMNS)

    command.__doc__ = doc
    return command


people_app.command("disable")(
    _person_action("disable", "Disable a person: no more sign-ins, signed out everywhere now.")
)
people_app.command("enable")(_person_action("enable", "Enable a disabled person again."))
people_app.command("reset-totp")(
    _person_action(
        "reset-totp", "Reset a person's second factor: signed out now, enrols at next sign-in."
    )
)
