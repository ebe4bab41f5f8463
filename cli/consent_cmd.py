"""``exchange catalog|agreements|consents``: the consent package's HTTP API from the shell.

Who you are and how output looks: the shared options of ``cli/connect.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from cli.connect import Session, connected

catalog_app = typer.Typer(help="Browse the data catalog.", no_args_is_help=True)
agreements_app = typer.Typer(help="Sharing agreements between departments.", no_args_is_help=True)
consents_app = typer.Typer(help="Data-subject consents.", no_args_is_help=True)
GROUPS = (("catalog", catalog_app), ("agreements", agreements_app), ("consents", consents_app))

CATALOG_COLUMNS = ("topic", "owner", "site", "title", "share_type", "update_cycle")
AGREEMENT_COLUMNS = (
    "id", "status", "topic", "owner", "consumer", "fields", "granted_fields", "valid_until",
    "overdue",
)  # fmt: skip
CONSENT_COLUMNS = ("id", "version", "status", "consumer", "topic", "purpose", "valid_until")


def _p(part: str) -> str:
    return quote(part, safe="")


# -- catalog -----------------------------------------------------------------------------
@catalog_app.command("list")
@connected()
def catalog_list(
    cx: Session,
    q: str | None = typer.Option(None, "--q", help="Text in name, title or description"),
    dept: str | None = typer.Option(None, "--dept"),
    share_type: str | None = typer.Option(None, "--share-type"),
) -> None:
    """Search the catalog."""
    params = {k: v for k, v in {"q": q, "dept": dept, "share_type": share_type}.items() if v}
    cx.emit(cx.call("GET", "/v1/catalog", params=params), CATALOG_COLUMNS)


@catalog_app.command("show")
@connected()
def catalog_show(cx: Session, topic: str) -> None:
    """One catalog entry with its fields' classification."""
    entry = cx.call("GET", f"/v1/catalog/{_p(topic)}")
    if cx.json:
        cx.emit(entry)
        return
    cx.emit({k: v for k, v in entry.items() if k != "fields"})
    fields = entry.get("fields")
    if isinstance(fields, list) and fields:
        cx.emit(fields, title="fields")


@catalog_app.command("asyncapi")
@connected()
def catalog_asyncapi(
    cx: Session,
    out: Path | None = typer.Option(None, "--out", help="Write to this file"),
) -> None:
    """Export the catalog as an AsyncAPI 3.0 document."""
    doc = cx.call("GET", "/v1/catalog/asyncapi")
    if out is None:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        out.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
        cx.note(f"wrote {out}")


# -- agreements --------------------------------------------------------------------------
@agreements_app.command("list")
@connected()
def agreements_list(
    cx: Session,
    topic: str | None = typer.Option(None, "--topic"),
    status: str | None = typer.Option(None, "--status"),
    overdue: bool = typer.Option(False, "--overdue", help="Only requests past their deadline"),
) -> None:
    """Agreements the caller may see (admin and auditor: all)."""
    params: dict[str, Any] = {k: v for k, v in {"topic": topic, "status": status}.items() if v}
    if overdue:
        params["overdue"] = "true"
    cx.emit(cx.call("GET", "/v1/agreements", params=params), AGREEMENT_COLUMNS)


@agreements_app.command("show")
@connected()
def agreements_show(cx: Session, agreement_id: str) -> None:
    """One agreement."""
    cx.emit(cx.call("GET", f"/v1/agreements/{_p(agreement_id)}"))


@agreements_app.command("request")
@connected()
def agreements_request(
    cx: Session,
    topic: str = typer.Option(..., "--topic"),
    fields: list[str] = typer.Option(..., "--field", help="Field path; repeat for more"),
    purpose: str = typer.Option(..., "--purpose"),
    valid_until: str = typer.Option(..., "--valid-until", help="ISO-8601 date-time"),
    valid_from: str | None = typer.Option(None, "--valid-from"),
    legal_basis: str | None = typer.Option(None, "--legal-basis"),
    requires_consent: bool = typer.Option(False, "--requires-subject-consent"),
) -> None:
    """Ask the topic's owner for access (role subscriber)."""
    body = {
        "topic": topic,
        "fields": fields,
        "purpose": purpose,
        "legal_basis": legal_basis,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "requires_subject_consent": requires_consent,
    }
    cx.emit(cx.call("POST", "/v1/agreements", json=body))


@agreements_app.command("approve")
@connected()
def agreements_approve(
    cx: Session,
    agreement_id: str,
    fields: list[str] | None = typer.Option(None, "--field", help="Narrow to these fields"),
) -> None:
    """Approve a request (the owner's steward), optionally narrowing its fields."""
    body = {"fields": fields} if fields else {}
    cx.emit(cx.call("POST", f"/v1/agreements/{_p(agreement_id)}/approve", json=body))


def _decision(action: str, needs_reason: bool) -> Callable[..., None]:
    @connected()
    def command(
        cx: Session, agreement_id: str, reason: str | None = typer.Option(None, "--reason")
    ) -> None:
        if needs_reason and not reason:
            raise typer.BadParameter("--reason is required", param_hint="--reason")
        body = {"reason": reason} if reason else None
        cx.emit(cx.call("POST", f"/v1/agreements/{_p(agreement_id)}/{action}", json=body))

    command.__doc__ = f"{action.title()} an agreement (the owner's steward)."
    return command


for _action, _needs in (("reject", True), ("suspend", False), ("revoke", False)):
    agreements_app.command(_action)(_decision(_action, _needs))


@agreements_app.command("resume")
@connected()
def agreements_resume(cx: Session, agreement_id: str) -> None:
    """Resume a suspended agreement (the owner's steward)."""
    cx.emit(cx.call("POST", f"/v1/agreements/{_p(agreement_id)}/resume"))


# -- consents ----------------------------------------------------------------------------
@consents_app.command("record")
@connected()
def consents_record(
    cx: Session,
    subject: str = typer.Option(..., "--subject", help="Data subject reference"),
    consumer: str = typer.Option(..., "--consumer", help="Department allowed to read"),
    topic: str = typer.Option(..., "--topic"),
    purpose: str = typer.Option(..., "--purpose"),
    valid_until: str = typer.Option(..., "--valid-until", help="ISO-8601 date-time"),
    fields: list[str] | None = typer.Option(None, "--field", help="Limit to these fields"),
) -> None:
    """Record a subject's consent (role consent_registrar); prints the signed artefact."""
    body = {
        "subject": subject,
        "consumer": consumer,
        "topic": topic,
        "purpose": purpose,
        "fields": fields or [],
        "valid_until": valid_until,
    }
    cx.emit(cx.call("POST", "/v1/consents", json=body))


@consents_app.command("lookup")
@connected()
def consents_lookup(cx: Session, subject: str) -> None:
    """A data subject's consents (its registrars)."""
    cx.emit(cx.call("POST", "/v1/consents/lookup", json={"subject": subject}), CONSENT_COLUMNS)


def _consent_call(method: str, suffix: str, doc: str) -> Callable[..., None]:
    @connected()
    def command(cx: Session, consent_id: str) -> None:
        out = cx.call(method, f"/v1/consents/{_p(consent_id)}{suffix}")
        cx.emit(out, ("version", "status", "actor", "created_at") if suffix else None)

    command.__doc__ = doc
    return command


for _name, _method, _suffix, _doc in (
    ("show", "GET", "", "The current version of a consent with its artefact."),
    ("versions", "GET", "/versions", "Every version of a consent."),
    ("revoke", "POST", "/revoke", "Revoke a consent (its registrar)."),
    ("pause", "POST", "/pause", "Pause a consent (its registrar)."),
    ("resume", "POST", "/resume", "Resume a paused consent (its registrar)."),
):
    consents_app.command(_name)(_consent_call(_method, _suffix, _doc))


@consents_app.command("managers")
@connected()
def consents_managers(cx: Session, owner: str) -> None:
    """Departments whose registrars record consents for OWNER's topics."""
    cx.emit(cx.call("GET", f"/v1/consents/managers/{_p(owner)}"))


@consents_app.command("designate")
@connected()
def consents_designate(cx: Session, owner: str, manager: str) -> None:
    """Let MANAGER's registrars record consents for OWNER's topics (admin)."""
    cx.emit(cx.call("PUT", f"/v1/consents/managers/{_p(owner)}/{_p(manager)}"))


@consents_app.command("withdraw")
@connected()
def consents_withdraw(cx: Session, owner: str, manager: str) -> None:
    """Withdraw a consent-manager designation (admin)."""
    cx.call("DELETE", f"/v1/consents/managers/{_p(owner)}/{_p(manager)}")
    cx.emit({"owner": owner, "manager": manager, "status": "withdrawn"})


@consents_app.command("verify")
@connected()
def consents_verify(
    cx: Session, artefact: str = typer.Argument(..., help="Compact JWS, or @FILE")
) -> None:
    """Check an artefact's signature against the gateway's JWKS and print its claims."""
    from consent.signing import verify_artefact  # the CLI is a composition root

    token = Path(artefact[1:]).read_text().strip() if artefact.startswith("@") else artefact
    jwks = cx.call("GET", "/v1/consents/jwks")
    cx.emit(verify_artefact(token, jwks))
