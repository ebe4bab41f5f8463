"""Map domain errors to RFC 9457 problem+json responses with a stable ``code``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
from gateway.denials import audit_denial

log = logging.getLogger(__name__)

STATUS: list[tuple[type[ExchangeError], int]] = [
    (InvalidToken, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (KafkaUnavailable, 503),
    (DependencyUnavailable, 503),
]


def status_for(exc: ExchangeError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:exchange:error:{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }
    # RFC 6750 §3.1: no error attribute when the request carried no credentials at all.
    challenge = (
        'Bearer realm="exchange"'
        if code == "missing_token"
        else ('Bearer realm="exchange", error="invalid_token"')
    )
    headers = {"WWW-Authenticate": challenge} if status == 401 else None
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    401: "unauthorized",
    403: "forbidden",
    413: "payload_too_large",
    429: "rate_limited",
}

# Input that Python accepts but cannot carry through: answered as the caller's fault wherever
# it surfaces (a route's own check should have said it more precisely), never as a 500.
UNCARRIABLE: dict[type[Exception], tuple[str, str]] = {
    RecursionError: ("input_too_deep", "input is nested too deeply"),
    UnicodeEncodeError: ("invalid_unicode", "text must be valid Unicode (no lone surrogates)"),
    OverflowError: ("out_of_range", "a number or date in the request is out of range"),
}


def response_for(exc: Exception) -> JSONResponse:
    """The problem+json answer for a domain error or an HTTP exception."""
    if isinstance(exc, ExchangeError):
        status = status_for(exc)
        if status >= 500:
            log.warning("dependency failure: %s (%s)", exc.code, type(exc.__cause__).__name__)
        return problem(status, exc.code, exc.message, **exc.details)
    if isinstance(exc, StarletteHTTPException):
        resp = problem(
            exc.status_code, HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail)
        )
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp
    for cls, (code, detail) in UNCARRIABLE.items():
        if isinstance(exc, cls):
            return problem(422, code, detail)
    raise TypeError(f"no answer for {type(exc).__name__}")


def audit_unavailable() -> JSONResponse:
    return problem(503, "dependency_unavailable", "the audit log is unavailable; retry later")


async def answer(request: Request, exc: ExchangeError | StarletteHTTPException) -> JSONResponse:
    """The answer, once a refusal among them is audited (gateway.denials; 503 if it cannot be)."""
    resp = response_for(exc)
    code = (
        exc.code
        if isinstance(exc, ExchangeError)
        else HTTP_CODES.get(exc.status_code, "http_error")
    )
    if not await audit_denial(request, resp.status_code, code):
        return audit_unavailable()
    return resp


def invalid_detail(errors: list[dict[str, Any]], shown: int = 3) -> str:
    """The 422 summary names the fields (all of them are in ``errors``)."""
    parts = [f"{e['path'] or 'request'}: {e['reason']}" for e in errors[:shown]]
    more = f" (and {len(errors) - shown} more)" if len(errors) > shown else ""
    return "request body or parameters are invalid: " + "; ".join(parts) + more


def install(app: FastAPI) -> None:
    @app.exception_handler(ExchangeError)
    async def _domain(request: Request, exc: ExchangeError) -> JSONResponse:
        return await answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"path": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg")}
            for e in exc.errors()
        ]
        return problem(422, "invalid_request", invalid_detail(errors), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return await answer(request, exc)

    async def _uncarriable(request: Request, exc: Exception) -> JSONResponse:
        # Logged by type and route only: the offending value may be a record's content.
        log.warning("refused %s on %s", type(exc).__name__, request.url.path)
        return response_for(exc)

    for cls in UNCARRIABLE:
        app.add_exception_handler(cls, _uncarriable)
