"""Confluent Schema Registry REST API under ``/registry``.

Errors use Confluent's bodies (``{"error_code": 40401, "message": ...}``), not problem+json:
``RegistryRoute`` turns our errors into them for every route of this router, including errors
raised by the auth dependency. It also matches routes on the percent-encoded path, so a
subject may hold ``/`` or any other character (``%2F``), and negotiates media types as
Confluent does (406 / 415).

Auth: bearer token (ours or the external issuer's) or HTTP Basic with client id and secret.
Reading needs registry:read (or registry:write / admin). Writing needs registry:write *and*
the subject's department (``schemas.registry.ownership``); global config and mode, and
subjects no department owns, are admin-only. Every refused write is audited.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote, unquote_to_bytes

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from exchange.auditing import AuditRecord
from exchange.errors import (
    Conflict,
    DependencyUnavailable,
    ExchangeError,
    Forbidden,
    InvalidInput,
    KafkaUnavailable,
    NotFound,
)
from exchange.identity.service import Client
from exchange.identity.throttle import Attempt, Lockout
from exchange.identity.tokens import InvalidToken
from gateway.access import access
from gateway.auth import authenticate_token, limit_principal, peer_address, services
from gateway.container import Services
from gateway.denials import audit_denial
from schemas.errors import InvalidSchema, RegistryError, SchemaNotFound
from schemas.registry import MAX_ID, SCHEMA_TYPES, Config, SchemaRegistry, SchemaVersion
from schemas.registry.ownership import may_write, topic_of

log = logging.getLogger(__name__)
V1 = "application/vnd.schemaregistry.v1+json"
# What Confluent produces, with its server-side quality; and what it consumes.
PRODUCES = ((V1, 1.0), ("application/vnd.schemaregistry+json", 0.9), ("application/json", 0.5))
CONSUMES = {
    V1,
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
}
MAX_BODY = 4 * 1024 * 1024  # a schema is text; anything larger is abuse
READ_ROLES = ("registry:read", "registry:write", "admin")
WRITE_ROLES = ("registry:write", "admin")


def reply(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=V1)


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


def negotiate(accept: str) -> str | None:
    """The media type to answer in for this ``Accept`` header; None = 406."""
    best, score = (V1, 0.0) if accept.strip() else (V1, 1.0)
    for part in accept.split(","):
        media, *params = (p.strip().lower() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        for produced, quality in PRODUCES:
            wild = media == "*/*" or (media.endswith("/*") and produced.startswith(media[:-1]))
            if (media == produced or wild) and q * quality > score:
                best, score = produced, q * quality
    return best if score > 0 else None


def _unquote(value: str) -> str:
    return unquote_to_bytes(value.encode("latin-1")).decode("utf-8")


PREFIX = "/registry"
_RAW_PREFIX = PREFIX.encode()


class RegistryRoute(APIRoute):
    """Every route of this router: raw-path matching, media types, Confluent's errors."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        raw = scope.get("raw_path")
        if scope.get("type") != "http" or not raw or scope.get("root_path"):
            return super().matches(scope)
        if not raw.startswith(_RAW_PREFIX):  # not ours: no scope copy for every other request
            return Match.NONE, {}
        # Match on the path as sent, so "%2F" inside a subject is not a separator.
        match, child = super().matches({**scope, "path": raw.decode("latin-1")})
        if match is Match.NONE:
            return match, child
        try:
            params = {
                k: _unquote(v) if isinstance(v, str) else v
                for k, v in child.get("path_params", {}).items()
            }
        except UnicodeDecodeError:
            return Match.NONE, {}
        return match, {**child, "path_params": params}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            media = negotiate(request.headers.get("accept", ""))
            if media is None:
                return error(406, 406, "HTTP 406 Not Acceptable")
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            resp: Response
            if request.method in ("POST", "PUT") and ctype and ctype not in CONSUMES:
                resp = error(415, 415, "HTTP 415 Unsupported Media Type")
            else:
                try:
                    resp = await handler(request)
                except (ExchangeError, RequestValidationError, StarletteHTTPException) as exc:
                    resp = error_for(exc)
                    code = getattr(exc, "code", "http_error")
                    if resp.status_code in (401, 403) and not await audit_denial(
                        request, resp.status_code, code
                    ):
                        resp = error(503, 50003, "The audit log is unavailable; retry later")
            if resp.headers.get("content-type", "").startswith(V1):
                resp.headers["content-type"] = media
            return resp

        return guarded


@dataclass(frozen=True)
class Caller:
    actor: str
    department: str
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
        return Caller(p.client_id, p.department, p.roles)
    if scheme.lower() == "basic":
        # Secret checks are deliberately slow: limit guessing per address before checking.
        address = peer_address(request)
        limiter.enforce(f"peer:{address}")
        try:
            cid, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidToken("malformed basic credentials") from None
        client = _basic_client(svc, unquote(cid), unquote(secret) if sep else None, address)
        request.state.basic_client = client
        limiter.enforce(f"client:{client.client_id}")
        return Caller(client.client_id, client.department, frozenset(client.roles))
    raise InvalidToken("missing credentials")


CLIENT_ID_MAX = 64  # the longest client id the exchange issues (as /oauth/token)


def _basic_client(svc: Services, cid: str, secret: str | None, address: str) -> Client:
    """HTTP Basic goes through the same failure throttle as ``/oauth/token``: a registry
    URL must not be a side door for guessing secrets without lockout."""
    tried = cid if len(cid) <= CLIENT_ID_MAX else cid[:CLIENT_ID_MAX] + "..."
    attempt, throttle = Attempt.of(tried or "unknown", address), svc.failure_throttle
    wait = throttle.admit(attempt)
    if wait > 0:
        _audit_basic_denied(svc, tried, address, "throttled")
        raise StarletteHTTPException(
            429,
            "too many failed attempts; retry later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    try:
        client = svc.identity.authenticate(cid, secret) if secret is not None else None
    except BaseException:
        throttle.finish(attempt, None)  # the store failed: no verdict to count
        raise
    lockouts = throttle.finish(attempt, client is not None)
    if client is None:
        _audit_basic_denied(svc, tried, address, "invalid_client", lockouts)
        raise InvalidToken("invalid client credentials")
    return client


def _audit_basic_denied(
    svc: Services, actor: str, address: str, reason: str, lockouts: list[Lockout] | None = None
) -> None:
    common = {"endpoint": "registry", "address": address}
    svc.audit.append_many(
        [
            AuditRecord(
                "token.denied", actor=actor, outcome="denied", data={**common, "reason": reason}
            ),
            *(
                AuditRecord(
                    "token.lockout",
                    actor=actor,
                    outcome="denied",
                    data={
                        **common,
                        "locked": lk.key,
                        "failures": lk.failures,
                        "seconds": lk.seconds,
                    },
                )
                for lk in lockouts or []
            ),
        ]
    )


def reader(c: Caller = Depends(caller)) -> Caller:
    if not c.roles & set(READ_ROLES):
        raise Forbidden(
            "User is denied operation: reading the registry needs registry:read",
            scope="registry:read",
        )
    return c


def _deny(svc: Services, request: Request, c: Caller, subject: str | None, why: str) -> Forbidden:
    # Recorded before the 403 goes out: a refused registry write is a security event (and
    # the only one for this refusal: gateway.denials writes nothing more for it).
    request.state.denial_audited = True
    svc.audit.append(
        AuditRecord(
            "registry.denied",
            actor=c.actor,
            department=c.department,
            outcome="denied",
            data={
                "method": request.method,
                "route": getattr(request.scope.get("route"), "path", None),
                "subject": subject,
                "reason": why,
            },
        )
    )
    return Forbidden(
        f"User is denied operation Write on Subject: {subject}", scope="registry:write"
    )


def writer(
    request: Request, c: Caller = Depends(caller), svc: Services = Depends(services)
) -> Caller:
    """registry:write (or admin), for a subject of the caller's own department."""
    subject: str | None = request.path_params.get("subject")
    if not c.roles & set(WRITE_ROLES):
        raise _deny(svc, request, c, subject, "changing the registry needs registry:write")
    if not may_write(subject, c.department, admin=c.is_admin):
        why = "admin only" if subject is None else "not a subject of the caller's department"
        raise _deny(svc, request, c, subject, why)
    return c


def registry(svc: Services = Depends(services)) -> SchemaRegistry:
    return svc.registry


async def body(request: Request) -> dict[str, Any]:
    """JSON body whatever the accepted content type (vnd.schemaregistry, json, octet-stream)."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise InvalidInput("Request body too large")
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        raise InvalidInput("Unrecognized request body: not JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("Unrecognized request body: expected a JSON object")
    return data


Read = Annotated[Caller, Depends(reader)]
Write = Annotated[Caller, Depends(writer)]
Reg = Annotated[SchemaRegistry, Depends(registry)]
Body = Annotated[dict[str, Any], Depends(body)]
Flag = Annotated[bool, Query()]
Deleted = Annotated[bool, Query()]
Offset = Annotated[int, Query()]
Limit = Annotated[int, Query()]
Normalize = Annotated[bool, Query()]
DefaultToGlobal = Annotated[bool, Query(alias="defaultToGlobal")]
Prefix = Annotated[str, Query(alias="subjectPrefix")]


class RegistryJSON(JSONResponse):
    media_type = V1


router = APIRouter(
    prefix=PREFIX,
    tags=["registry"],
    route_class=RegistryRoute,
    default_response_class=RegistryJSON,  # documents the media type every answer carries
)


def _schema_args(data: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str]:
    schema = data.get("schema")
    if schema is None or (isinstance(schema, str) and not schema.strip()):
        raise InvalidSchema("Empty schema")
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


def _page(items: list[Any], offset: int, limit: int) -> list[Any]:
    """Confluent's pagination: a negative or zero limit means no limit."""
    start = max(offset, 0)
    return items[start : start + limit] if limit > 0 else items[start:]


def _config_body(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {"compatibilityLevel": cfg.compatibility.value}
    if cfg.normalize is not None:
        out["normalize"] = cfg.normalize
    return out


def _schema_id(value: str) -> int:
    try:
        return int(value)
    except ValueError:  # Jersey cannot bind the id: Confluent answers a plain 404
        raise _NotARoute() from None


class _NotARoute(NotFound):
    def __init__(self) -> None:
        super().__init__("HTTP 404 Not Found")


# -- schemas -----------------------------------------------------------------------------
@router.get("/schemas/types")
@access("registry:read", "registry:write", "admin")
def schema_types(_: Read) -> JSONResponse:
    return reply(list(SCHEMA_TYPES))


@router.get("/schemas")
@access("registry:read", "registry:write", "admin")
def list_schemas(
    _: Read,
    reg: Reg,
    subject_prefix: Prefix = "",
    deleted: Deleted = False,
    latest_only: Annotated[bool, Query(alias="latestOnly")] = False,
    offset: Offset = 0,
    limit: Limit = -1,
) -> JSONResponse:
    found = reg.schemas(prefix=subject_prefix, deleted=deleted, latest_only=latest_only)
    return reply(_page([_version_body(v) for v in found], offset, limit))


@router.get("/schemas/ids/{schema_id}")
@access("registry:read", "registry:write", "admin")
def schema_by_id(schema_id: str, _: Read, reg: Reg, subject: str | None = None) -> JSONResponse:
    number = _schema_id(schema_id)
    s = reg.by_id(number)
    if subject is not None and not reg.usages(number, deleted=True, subject=subject):
        raise SchemaNotFound(f"Schema {number} not found")
    out: dict[str, Any] = {"schema": s.schema}
    if s.references:
        out["references"] = s.references
    return reply(out)


def raw_schema(text: str) -> Response:
    # The schema text exactly as stored (a JSON document).
    return Response(text, media_type=V1)


@router.get("/schemas/ids/{schema_id}/schema")
@access("registry:read", "registry:write", "admin")
def schema_text_by_id(schema_id: str, _: Read, reg: Reg) -> Response:
    return raw_schema(reg.by_id(_schema_id(schema_id)).schema)


@router.get("/schemas/ids/{schema_id}/versions")
@access("registry:read", "registry:write", "admin")
def schema_versions(
    schema_id: str,
    _: Read,
    reg: Reg,
    deleted: Deleted = False,
    subject: str | None = None,
    offset: Offset = 0,
    limit: Limit = -1,
) -> JSONResponse:
    used = reg.usages(_schema_id(schema_id), deleted=deleted, subject=subject)
    return reply(_page([{"subject": s, "version": v} for s, v in used], offset, limit))


@router.get("/schemas/ids/{schema_id}/subjects")
@access("registry:read", "registry:write", "admin")
def schema_subjects(
    schema_id: str,
    _: Read,
    reg: Reg,
    deleted: Deleted = False,
    subject: str | None = None,
    offset: Offset = 0,
    limit: Limit = -1,
) -> JSONResponse:
    used = reg.usages(_schema_id(schema_id), deleted=deleted, subject=subject)
    return reply(_page(sorted({s for s, _v in used}), offset, limit))


# -- subjects ----------------------------------------------------------------------------
def _deleted_only(request: Request) -> bool:
    # Confluent's REST name is deletedOnly; its Python client sends deleted_only.
    value = request.query_params.get("deletedOnly", request.query_params.get("deleted_only"))
    return str(value).lower() == "true"


@router.get("/subjects")
@access("registry:read", "registry:write", "admin")
def list_subjects(
    request: Request,
    _: Read,
    reg: Reg,
    deleted: Deleted = False,
    subject_prefix: Prefix = "",
    offset: Offset = 0,
    limit: Limit = -1,
) -> JSONResponse:
    names = reg.subjects(
        deleted=deleted, deleted_only=_deleted_only(request), prefix=subject_prefix
    )
    return reply(_page(names, offset, limit))


@router.post("/subjects/{subject}/versions")
@access("own:registry:write", "admin")
def register(
    subject: str, c: Write, reg: Reg, data: Body, normalize: Normalize = False
) -> JSONResponse:
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
        normalize=normalize,
    )
    return reply({"id": sid})


@router.post("/subjects/{subject}")
@access("registry:read", "registry:write", "admin")
def lookup(
    subject: str,
    _: Read,
    reg: Reg,
    data: Body,
    deleted: Deleted = False,
    normalize: Normalize = False,
) -> JSONResponse:
    schema, refs, kind = _schema_args(data)
    found = reg.lookup(
        subject, schema, refs, deleted=deleted, schema_type=kind, normalize=normalize
    )
    return reply(_version_body(found))


@router.get("/subjects/{subject}/versions")
@access("registry:read", "registry:write", "admin")
def list_versions(
    request: Request,
    subject: str,
    _: Read,
    reg: Reg,
    deleted: Deleted = False,
    offset: Offset = 0,
    limit: Limit = -1,
) -> JSONResponse:
    found = reg.versions(subject, deleted=deleted, deleted_only=_deleted_only(request))
    return reply(_page(found, offset, limit))


@router.get("/subjects/{subject}/versions/{version}")
@access("registry:read", "registry:write", "admin")
def get_version(
    subject: str, version: str, _: Read, reg: Reg, deleted: Deleted = False
) -> JSONResponse:
    return reply(_version_body(reg.version(subject, version, deleted=deleted)))


@router.get("/subjects/{subject}/versions/{version}/schema")
@access("registry:read", "registry:write", "admin")
def get_version_schema(
    subject: str, version: str, _: Read, reg: Reg, deleted: Deleted = False
) -> Response:
    return raw_schema(reg.version(subject, version, deleted=deleted).schema)


@router.get("/subjects/{subject}/versions/{version}/referencedby")
@access("registry:read", "registry:write", "admin")
def referenced_by(
    subject: str, version: str, _: Read, reg: Reg, offset: Offset = 0, limit: Limit = -1
) -> JSONResponse:
    return reply(_page(reg.referenced_by(subject, version), offset, limit))


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


def _not_live(svc: Services, request: Request, c: Caller, subject: str) -> None:
    """A permanent delete must not pull the schemas from under a topic still in the catalog."""
    topic = topic_of(subject)
    if topic is None:
        return
    try:
        svc.catalog.get(topic)
    except NotFound:
        return
    svc.audit.append(
        AuditRecord(
            "registry.denied",
            actor=c.actor,
            department=c.department,
            topic=topic,
            outcome="denied",
            data={"method": request.method, "subject": subject, "reason": "live topic"},
        )
    )
    raise Conflict(
        f"Subject '{subject}' backs the live topic '{topic}'; retire the topic before "
        "deleting its schemas permanently"
    )


@router.delete("/subjects/{subject}")
@access("own:registry:write", "admin")
def delete_subject(
    request: Request,
    subject: str,
    c: Write,
    reg: Reg,
    svc: Annotated[Services, Depends(services)],
    permanent: Flag = False,
) -> JSONResponse:
    if permanent:
        _not_live(svc, request, c, subject)
    return reply(reg.delete_subject(subject, permanent=permanent, actor=c.actor))


@router.delete("/subjects/{subject}/versions/{version}")
@access("own:registry:write", "admin")
def delete_version(
    request: Request,
    subject: str,
    version: str,
    c: Write,
    reg: Reg,
    svc: Annotated[Services, Depends(services)],
    permanent: Flag = False,
) -> JSONResponse:
    if permanent:
        _not_live(svc, request, c, subject)
    return reply(reg.delete_version(subject, version, permanent=permanent, actor=c.actor))


# -- compatibility -----------------------------------------------------------------------
def _compatibility(
    subject: str, version: str | None, c: Caller, reg: SchemaRegistry, data: dict[str, Any],
    verbose: bool, normalize: bool,
) -> JSONResponse:  # fmt: skip
    schema, refs, kind = _schema_args(data)
    problems = reg.check(
        subject,
        schema,
        refs,
        version,
        schema_type=kind,
        normalize=normalize,
        actor_is_admin=c.is_admin,
    )
    out: dict[str, Any] = {"is_compatible": not problems}
    if verbose:
        out["messages"] = problems
    return reply(out)


@router.post("/compatibility/subjects/{subject}/versions/{version}")
@access("registry:read", "registry:write", "admin")
def compatibility(
    subject: str,
    version: str,
    c: Read,
    reg: Reg,
    data: Body,
    verbose: Flag = False,
    normalize: Normalize = False,
) -> JSONResponse:
    return _compatibility(subject, version, c, reg, data, verbose, normalize)


@router.post("/compatibility/subjects/{subject}/versions")
@access("registry:read", "registry:write", "admin")
def compatibility_all(
    subject: str,
    c: Read,
    reg: Reg,
    data: Body,
    verbose: Flag = False,
    normalize: Normalize = False,
) -> JSONResponse:
    return _compatibility(subject, None, c, reg, data, verbose, normalize)


# -- config and mode ---------------------------------------------------------------------
def _put_config(
    subject: str | None, c: Caller, reg: SchemaRegistry, data: dict[str, Any]
) -> JSONResponse:
    level, normalize = data.get("compatibility"), data.get("normalize")
    if normalize is not None and not isinstance(normalize, bool):
        raise InvalidInput("normalize must be true or false")
    cfg = reg.set_config(
        subject, None if level is None else str(level), normalize=normalize, actor=c.actor
    )
    out: dict[str, Any] = {"compatibility": cfg.compatibility.value}
    if normalize is not None:
        out["normalize"] = normalize
    return reply(out)


@router.get("/config")
@access("registry:read", "registry:write", "admin")
def get_global_config(_: Read, reg: Reg) -> JSONResponse:
    return reply(_config_body(reg.get_config(None)))


@router.put("/config")
@access("admin")
def put_global_config(c: Write, reg: Reg, data: Body) -> JSONResponse:
    return _put_config(None, c, reg, data)


@router.delete("/config")
@access("admin")
def delete_global_config(c: Write, reg: Reg) -> JSONResponse:
    return reply(_config_body(reg.delete_config(None, actor=c.actor)))


@router.get("/config/{subject}")
@access("registry:read", "registry:write", "admin")
def get_config(
    subject: str, _: Read, reg: Reg, default_to_global: DefaultToGlobal = False
) -> JSONResponse:
    return reply(_config_body(reg.get_config(subject, default_to_global=default_to_global)))


@router.put("/config/{subject}")
@access("own:registry:write", "admin")
def put_config(subject: str, c: Write, reg: Reg, data: Body) -> JSONResponse:
    return _put_config(subject, c, reg, data)


@router.delete("/config/{subject}")
@access("own:registry:write", "admin")
def delete_config(subject: str, c: Write, reg: Reg) -> JSONResponse:
    return reply(_config_body(reg.delete_config(subject, actor=c.actor)))


@router.get("/mode")
@access("registry:read", "registry:write", "admin")
def get_global_mode(_: Read, reg: Reg) -> JSONResponse:
    return reply({"mode": reg.get_mode(None).value})


@router.put("/mode")
@access("admin")
def put_global_mode(c: Write, reg: Reg, data: Body, force: Flag = False) -> JSONResponse:
    mode = reg.set_mode(None, str(data.get("mode", "")), force=force, actor=c.actor)
    return reply({"mode": mode.value})


@router.get("/mode/{subject}")
@access("registry:read", "registry:write", "admin")
def get_mode(
    subject: str, _: Read, reg: Reg, default_to_global: DefaultToGlobal = False
) -> JSONResponse:
    return reply({"mode": reg.get_mode(subject, default_to_global=default_to_global).value})


@router.put("/mode/{subject}")
@access("own:registry:write", "admin")
def put_mode(subject: str, c: Write, reg: Reg, data: Body, force: Flag = False) -> JSONResponse:
    mode = reg.set_mode(subject, str(data.get("mode", "")), force=force, actor=c.actor)
    return reply({"mode": mode.value})


@router.delete("/mode/{subject}")
@access("own:registry:write", "admin")
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
def unknown(request: Request, rest: str, _: Read) -> JSONResponse:
    """Last route: anything else under /registry answers in Confluent's format too."""
    others = [
        r for r in router.routes if isinstance(r, RegistryRoute) and r.endpoint is not unknown
    ]
    # A path some route serves, with another method: Jersey's 405.
    if any(r.matches(request.scope)[0] is Match.PARTIAL for r in others):
        return error(405, 405, "HTTP 405 Method Not Allowed")
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
