"""Confluent Schema Registry REST API under ``/registry``.

Errors use Confluent's bodies (``{"error_code": 40401, "message": ...}``), not problem+json:
``RegistryRoute`` turns our errors into them for every route of this router, including errors
raised by the auth dependency. Auth: bearer token (ours or the external issuer's) or HTTP
Basic with client id and secret; reading needs registry:read (or registry:write / admin),
writing needs registry:write.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from exchange.errors import (
    Conflict,
    DependencyUnavailable,
    ExchangeError,
    Forbidden,
    InvalidInput,
    KafkaUnavailable,
    NotFound,
)
from exchange.identity.tokens import InvalidToken
from gateway.access import access
from gateway.auth import authenticate_token, limit_principal, services
from gateway.container import Services
from gateway.denials import audit_denial
from schemas.errors import InvalidSchema, RegistryError
from schemas.registry import MAX_ID, SCHEMA_TYPES, SchemaRegistry, SchemaVersion

log = logging.getLogger(__name__)
MEDIA = "application/vnd.schemaregistry.v1+json"
MAX_BODY = 4 * 1024 * 1024  # a schema is text; anything larger is abuse
READ_ROLES = ("registry:read", "registry:write", "admin")
WRITE_ROLES = ("registry:write",)


def reply(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=MEDIA)


def error(status: int, code: int, message: str) -> JSONResponse:
    resp = reply({"error_code": code, "message": message}, status)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="exchange", Basic realm="exchange"'
    return resp


def error_for(exc: Exception) -> JSONResponse:
    if isinstance(exc, RegistryError):
        return error(exc.http_status, exc.error_code, exc.message)
    if isinstance(exc, InvalidToken):
        return error(401, 401, "Unauthorized")
    if isinstance(exc, Forbidden):
        resp = error(403, 40301, exc.message)
        if scope := exc.details.get("scope"):
            resp.headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{scope}"'
        return resp
    if isinstance(exc, NotFound):
        return error(404, 404, exc.message)
    if isinstance(exc, Conflict):
        return error(409, 409, exc.message)
    if isinstance(exc, InvalidInput):
        return error(422, 422, exc.message)
    if isinstance(exc, DependencyUnavailable | KafkaUnavailable):
        log.warning("registry dependency failure: %s", type(exc.__cause__).__name__)
        return error(503, 50003, "Error while forwarding the request to the store")
    if isinstance(exc, RequestValidationError):
        return error(422, 422, "Unprocessable entity: invalid request parameters")
    if isinstance(exc, StarletteHTTPException):  # e.g. 429 from the rate limiter
        resp = error(exc.status_code, exc.status_code * 100 + 1, str(exc.detail))
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp
    assert isinstance(exc, ExchangeError)
    return error(500, 50001, "Error in the backend data store")


class RegistryRoute(APIRoute):
    """Every route of this router answers our errors in Confluent's format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (ExchangeError, RequestValidationError, StarletteHTTPException) as exc:
                resp = error_for(exc)
                code = getattr(exc, "code", "http_error")
                if resp.status_code in (401, 403) and not await audit_denial(
                    request, resp.status_code, code
                ):
                    return error(503, 50003, "The audit log is unavailable; retry later")
                return resp

        return guarded


@dataclass(frozen=True)
class Caller:
    actor: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def caller(request: Request, svc: Services = Depends(services)) -> Caller:
    """Bearer token or HTTP Basic (client id and secret), rate limited like other routes."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    limiter = svc.rate_limiter
    if scheme.lower() == "bearer" and value.strip():
        p = authenticate_token(svc, value.strip())
        limit_principal(svc, p)
        request.state.principal = p  # who is refused, if it comes to that (gateway.denials)
        return Caller(p.client_id, p.roles)
    if scheme.lower() == "basic":
        # Secret checks are deliberately slow: limit guessing per address before checking.
        limiter.enforce(f"peer:{request.client.host if request.client else 'unknown'}")
        try:
            cid, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidToken("malformed basic credentials") from None
        client = svc.identity.authenticate(unquote(cid), unquote(secret)) if sep else None
        if client is None:
            raise InvalidToken("invalid client credentials")
        request.state.basic_client = client
        limiter.enforce(f"client:{client.client_id}")
        return Caller(client.client_id, frozenset(client.roles))
    raise InvalidToken("missing credentials")


def reader(c: Caller = Depends(caller)) -> Caller:
    if not c.roles & set(READ_ROLES):
        raise Forbidden(
            "User is denied operation: reading the registry needs registry:read",
            scope="registry:read",
        )
    return c


def writer(c: Caller = Depends(caller)) -> Caller:
    if not c.roles & set(WRITE_ROLES):
        raise Forbidden(
            "User is denied operation: changing the registry needs registry:write",
            scope="registry:write",
        )
    return c


def registry(svc: Services = Depends(services)) -> SchemaRegistry:
    reg: SchemaRegistry = svc.registry
    return reg


async def body(request: Request) -> dict[str, Any]:
    """JSON body whatever the content type (vnd.schemaregistry, json, octet-stream)."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise InvalidInput("Request body too large")
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        raise InvalidInput("Unrecognized request body: not JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("Unrecognized request body: expected a JSON object")
    return data


Read = Annotated[Caller, Depends(reader)]
Write = Annotated[Caller, Depends(writer)]
Reg = Annotated[SchemaRegistry, Depends(registry)]
Body = Annotated[dict[str, Any], Depends(body)]
Deleted = Annotated[bool, Query()]

class RegistryJSON(JSONResponse):
    media_type = MEDIA


router = APIRouter(
    prefix="/registry",
    tags=["registry"],
    route_class=RegistryRoute,
    default_response_class=RegistryJSON,  # documents the media type every answer carries
)


def _schema_args(data: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str]:
    schema = data.get("schema")
    if not isinstance(schema, str):
        raise InvalidSchema('Invalid schema: the body needs a "schema" string')
    refs = data.get("references") or []
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise InvalidSchema("Invalid schema: references must be a list of objects")
    return schema, refs, str(data.get("schemaType") or "AVRO")


def _version_body(v: SchemaVersion) -> dict[str, Any]:
    out: dict[str, Any] = {"subject": v.subject, "version": v.version, "id": v.id}
    if v.references:
        out["references"] = v.references
    out["schema"] = v.schema
    return out


# -- schemas -----------------------------------------------------------------------------
@router.get("/schemas/types")
@access("registry:read", "registry:write", "admin")
def schema_types(_: Read) -> JSONResponse:
    return reply(list(SCHEMA_TYPES))


@router.get("/schemas/ids/{schema_id}")
@access("registry:read", "registry:write", "admin")
def schema_by_id(schema_id: int, _: Read, reg: Reg) -> JSONResponse:
    s = reg.by_id(schema_id)
    out: dict[str, Any] = {"schema": s.schema}
    if s.references:
        out["references"] = s.references
    return reply(out)


def raw_schema(text: str) -> Response:
    # The schema exactly as registered (a JSON document, or a bare primitive name).
    return Response(text, media_type=MEDIA)


@router.get("/schemas/ids/{schema_id}/schema")
@access("registry:read", "registry:write", "admin")
def schema_text_by_id(schema_id: int, _: Read, reg: Reg) -> Response:
    return raw_schema(reg.by_id(schema_id).schema)


@router.get("/schemas/ids/{schema_id}/versions")
@access("registry:read", "registry:write", "admin")
def schema_versions(schema_id: int, _: Read, reg: Reg, deleted: Deleted = False) -> JSONResponse:
    return reply([{"subject": s, "version": v} for s, v in reg.usages(schema_id, deleted=deleted)])


@router.get("/schemas/ids/{schema_id}/subjects")
@access("registry:read", "registry:write", "admin")
def schema_subjects(schema_id: int, _: Read, reg: Reg, deleted: Deleted = False) -> JSONResponse:
    return reply(sorted({s for s, _v in reg.usages(schema_id, deleted=deleted)}))


# -- subjects ----------------------------------------------------------------------------
@router.get("/subjects")
@access("registry:read", "registry:write", "admin")
def list_subjects(
    _: Read,
    reg: Reg,
    deleted: Deleted = False,
    subject_prefix: Annotated[str, Query(alias="subjectPrefix")] = "",
) -> JSONResponse:
    return reply(reg.subjects(deleted=deleted, prefix=subject_prefix))


@router.post("/subjects/{subject}/versions")
@access("own:registry:write")
def register(subject: str, c: Write, reg: Reg, data: Body) -> JSONResponse:
    schema, refs, kind = _schema_args(data)
    sid = reg.register(
        subject,
        schema,
        refs,
        schema_type=kind,
        actor=c.actor,
        actor_is_admin=c.is_admin,
        schema_id=_opt_int(data.get("id")),
        version=_opt_int(data.get("version")),
    )
    return reply({"id": sid})


@router.post("/subjects/{subject}")
@access("registry:read", "registry:write", "admin")
def lookup(subject: str, _: Read, reg: Reg, data: Body, deleted: Deleted = False) -> JSONResponse:
    schema, refs, kind = _schema_args(data)
    return reply(
        _version_body(reg.lookup(subject, schema, refs, deleted=deleted, schema_type=kind))
    )


@router.get("/subjects/{subject}/versions")
@access("registry:read", "registry:write", "admin")
def list_versions(subject: str, _: Read, reg: Reg, deleted: Deleted = False) -> JSONResponse:
    return reply(reg.versions(subject, deleted=deleted))


@router.get("/subjects/{subject}/versions/{version}")
@access("registry:read", "registry:write", "admin")
def get_version(
    subject: str, version: str, _: Read, reg: Reg, deleted: Deleted = False
) -> JSONResponse:
    return reply(_version_body(reg.version(subject, version, deleted=deleted)))


@router.get("/subjects/{subject}/versions/{version}/schema")
@access("registry:read", "registry:write", "admin")
def get_version_schema(subject: str, version: str, _: Read, reg: Reg) -> Response:
    return raw_schema(reg.version(subject, version).schema)


@router.get("/subjects/{subject}/versions/{version}/referencedby")
@access("registry:read", "registry:write", "admin")
def referenced_by(subject: str, version: str, _: Read, reg: Reg) -> JSONResponse:
    return reply(reg.referenced_by(subject, version))


@router.get("/subjects/{subject}/versions/{version}/fields")
@access("registry:read", "registry:write", "admin")
def fields(subject: str, version: str, _: Read, reg: Reg) -> JSONResponse:
    """Our extension: the classification of every field of this version."""
    return reply(
        [
            {
                "path": f.path,
                "classification": f.classification.value,
                "data_subject": f.data_subject,
                "type": f.avro_type,
            }
            for f in reg.fields(subject, version)
        ]
    )


@router.delete("/subjects/{subject}")
@access("own:registry:write")
def delete_subject(subject: str, c: Write, reg: Reg, permanent: bool = False) -> JSONResponse:
    return reply(reg.delete_subject(subject, permanent=permanent, actor=c.actor))


@router.delete("/subjects/{subject}/versions/{version}")
@access("own:registry:write")
def delete_version(
    subject: str, version: str, c: Write, reg: Reg, permanent: bool = False
) -> JSONResponse:
    return reply(reg.delete_version(subject, version, permanent=permanent, actor=c.actor))


# -- compatibility -----------------------------------------------------------------------
@router.post("/compatibility/subjects/{subject}/versions/{version}")
@access("registry:read", "registry:write", "admin")
def compatibility(
    subject: str, version: str, _: Read, reg: Reg, data: Body, verbose: bool = False
) -> JSONResponse:
    schema, refs, kind = _schema_args(data)
    problems = reg.check(subject, schema, refs, version, schema_type=kind)
    out: dict[str, Any] = {"is_compatible": not problems}
    if verbose:
        out["messages"] = problems
    return reply(out)


@router.post("/compatibility/subjects/{subject}/versions")
@access("registry:read", "registry:write", "admin")
def compatibility_all(
    subject: str, _: Read, reg: Reg, data: Body, verbose: bool = False
) -> JSONResponse:
    return compatibility(subject, "latest", _, reg, data, verbose)


# -- config and mode ---------------------------------------------------------------------
@router.get("/config")
@access("registry:read", "registry:write", "admin")
def get_global_config(_: Read, reg: Reg) -> JSONResponse:
    return reply({"compatibilityLevel": reg.get_config(None).value})


@router.put("/config")
@access("admin")
def put_global_config(c: Write, reg: Reg, data: Body) -> JSONResponse:
    level = reg.set_config(None, str(data.get("compatibility", "")), actor=c.actor)
    return reply({"compatibility": level.value})


@router.delete("/config")
@access("admin")
def delete_global_config(c: Write, reg: Reg) -> JSONResponse:
    return reply({"compatibilityLevel": reg.delete_config(None, actor=c.actor).value})


@router.get("/config/{subject}")
@access("registry:read", "registry:write", "admin")
def get_config(
    subject: str,
    _: Read,
    reg: Reg,
    default_to_global: Annotated[bool, Query(alias="defaultToGlobal")] = False,
) -> JSONResponse:
    level = reg.get_config(subject, default_to_global=default_to_global)
    return reply({"compatibilityLevel": level.value})


@router.put("/config/{subject}")
@access("own:registry:write")
def put_config(subject: str, c: Write, reg: Reg, data: Body) -> JSONResponse:
    level = reg.set_config(subject, str(data.get("compatibility", "")), actor=c.actor)
    return reply({"compatibility": level.value})


@router.delete("/config/{subject}")
@access("own:registry:write")
def delete_config(subject: str, c: Write, reg: Reg) -> JSONResponse:
    return reply({"compatibilityLevel": reg.delete_config(subject, actor=c.actor).value})


@router.get("/mode")
@access("registry:read", "registry:write", "admin")
def get_global_mode(_: Read, reg: Reg) -> JSONResponse:
    return reply({"mode": reg.get_mode(None).value})


@router.put("/mode")
@access("admin")
def put_global_mode(c: Write, reg: Reg, data: Body, force: bool = False) -> JSONResponse:
    mode = reg.set_mode(None, str(data.get("mode", "")), force=force, actor=c.actor)
    return reply({"mode": mode.value})


@router.get("/mode/{subject}")
@access("registry:read", "registry:write", "admin")
def get_mode(
    subject: str,
    _: Read,
    reg: Reg,
    default_to_global: Annotated[bool, Query(alias="defaultToGlobal")] = False,
) -> JSONResponse:
    return reply({"mode": reg.get_mode(subject, default_to_global=default_to_global).value})


@router.put("/mode/{subject}")
@access("own:registry:write")
def put_mode(subject: str, c: Write, reg: Reg, data: Body, force: bool = False) -> JSONResponse:
    mode = reg.set_mode(subject, str(data.get("mode", "")), force=force, actor=c.actor)
    return reply({"mode": mode.value})


@router.delete("/mode/{subject}")
@access("own:registry:write")
def delete_mode(subject: str, c: Write, reg: Reg) -> JSONResponse:
    return reply({"mode": reg.delete_mode(subject, actor=c.actor).value})


@router.get("/contexts")
@access("registry:read", "registry:write", "admin")
def contexts(_: Read) -> JSONResponse:
    return reply(["."])  # one (default) context


@router.get("")
@router.get("/")
@access("registry:read", "registry:write", "admin")
def root(_: Read) -> JSONResponse:
    return reply({})


@router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
@access("registry:read", "registry:write", "admin")
def unknown(rest: str, _: Read) -> JSONResponse:
    """Last route: anything else under /registry answers in Confluent's format too."""
    return error(404, 404, "HTTP 404 Not Found")


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput("id and version must be integers") from None
    if not 0 < number <= MAX_ID:
        raise InvalidInput(f"id and version must be between 1 and {MAX_ID}")
    return number


__all__ = ["router"]
