"""``exchange schema ...``: the registry over HTTP, as any client would.

Who you are and how output looks: the shared options of ``cli/connect.py`` (the same
``--profile``/``EXCHANGE_CLIENT_ID``/``EXCHANGE_CLIENT_SECRET`` as every other group).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from cli.connect import Session, connected

app = typer.Typer(help="Register, check and show Avro schemas.", no_args_is_help=True)

LEVELS = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
          "FULL_TRANSITIVE", "NONE")  # fmt: skip


def _s(subject: str) -> str:
    return quote(subject, safe="")  # a subject may hold "/" or any other character


def read_schema(cx: Session, file: Path) -> str:
    try:
        text = file.read_text(encoding="utf-8")
        json.loads(text)
    except ValueError as exc:
        cx.fail(f"{file} is not JSON: {exc}", "an Avro schema file (.avsc) is a JSON document")
    return text


@app.command()
@connected()
def register(cx: Session, subject: str, file: Path) -> None:
    """Register FILE.avsc under SUBJECT (conventionally `<topic>-value`); prints the id."""
    out = cx.call(
        "POST", f"/registry/subjects/{_s(subject)}/versions", json={"schema": read_schema(cx, file)}
    )
    cx.emit({"subject": subject, "id": out["id"]})


@app.command()
@connected()
def check(cx: Session, subject: str, file: Path) -> None:
    """Is FILE.avsc compatible with SUBJECT's history? Exit 1 and say why if not."""
    path = f"/registry/compatibility/subjects/{_s(subject)}/versions/latest"
    out = cx.call("POST", path, json={"schema": read_schema(cx, file)}, params={"verbose": "true"})
    if cx.json:
        cx.emit(out)
    if out["is_compatible"]:
        if not cx.json:
            cx.emit("compatible")
        return
    for message in out.get("messages", []):
        cx.note(str(message))
    cx.fail("incompatible with the subject's history", "the lines above say why")


@app.command()
@connected()
def show(
    cx: Session, subject: str, version: str = typer.Argument("latest", help="Number or latest")
) -> None:
    """Print a version of SUBJECT (default: latest) and the classification of its fields."""
    v = cx.call("GET", f"/registry/subjects/{_s(subject)}/versions/{version}")
    fields = cx.call("GET", f"/registry/subjects/{_s(subject)}/versions/{v['version']}/fields")
    if cx.json:
        cx.emit({**v, "schema": json.loads(v["schema"]), "fields": fields})
        return
    cx.emit({"subject": v["subject"], "version": v["version"], "id": v["id"]})
    cx.emit(fields, ("path", "classification", "data_subject"), title="fields")
    if not fields:
        cx.emit(json.dumps(json.loads(v["schema"]), indent=2, ensure_ascii=False))


@app.command("list")
@connected()
def list_subjects(cx: Session) -> None:
    """Subjects the caller may see."""
    cx.emit([{"subject": s} for s in cx.call("GET", "/registry/subjects")])


@app.command()
@connected()
def versions(cx: Session, subject: str) -> None:
    """SUBJECT's version numbers."""
    cx.emit([{"version": v} for v in cx.call("GET", f"/registry/subjects/{_s(subject)}/versions")])


@app.command()
@connected()
def compatibility(
    cx: Session,
    subject: str | None = typer.Argument(None, help="Default: the global level"),
    level: str | None = typer.Option(None, "--set", help="New level: " + ", ".join(LEVELS)),
) -> None:
    """Show (or --set) the compatibility level of SUBJECT or the registry."""
    path = f"/registry/config/{_s(subject)}" if subject else "/registry/config"
    out: Any
    if level:
        out = cx.call("PUT", path, json={"compatibility": level.upper()})
    else:
        out = cx.call("GET", path, params={"defaultToGlobal": "true"} if subject else None)
    cx.emit(out)


@app.command()
@connected()
def delete(
    cx: Session,
    subject: str,
    version: str | None = typer.Argument(None, help="Only this version"),
    permanent: bool = typer.Option(False, "--permanent", help="Hard delete (after a soft one)"),
) -> None:
    """Delete SUBJECT (or one version): soft by default, as in Confluent's registry."""
    path = f"/registry/subjects/{_s(subject)}" + (f"/versions/{version}" if version else "")
    out = cx.call("DELETE", path, params={"permanent": "true"} if permanent else None)
    cx.emit({"subject": subject, "deleted": out})


@app.command("id")
@connected()
def by_id(cx: Session, schema_id: int = typer.Argument(..., metavar="ID")) -> None:
    """The schema with this global id (as in a record's Avro frame) and where it is used."""
    got = cx.call("GET", f"/registry/schemas/ids/{schema_id}")
    used = cx.call("GET", f"/registry/schemas/ids/{schema_id}/versions")
    if cx.json:
        cx.emit({"id": schema_id, "schema": json.loads(got["schema"]), "versions": used})
        return
    cx.emit(used, ("subject", "version"), title=f"schema {schema_id}")
    cx.emit(json.dumps(json.loads(got["schema"]), indent=2, ensure_ascii=False))


MODES = ("READWRITE", "READONLY", "IMPORT")


@app.command()
@connected()
def mode(
    cx: Session,
    subject: str | None = typer.Argument(None, help="Default: the global mode"),
    new: str | None = typer.Option(None, "--set", help="New mode: " + ", ".join(MODES)),
) -> None:
    """Show (or --set) the registry mode of SUBJECT or of the registry."""
    path = f"/registry/mode/{_s(subject)}" if subject else "/registry/mode"
    out: Any
    if new:
        out = cx.call("PUT", path, json={"mode": new.upper()})
    else:
        out = cx.call("GET", path, params={"defaultToGlobal": "true"} if subject else None)
    cx.emit(out)
