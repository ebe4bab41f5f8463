"""RFC 9457 problem+json answers and the status of each domain error, with nothing heavy
imported: the gateway (:mod:`gateway.errors`) and the county node's app share them."""

from __future__ import annotations

import logging
from typing import Any

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


class Unauthenticated(ExchangeError):
    """No valid credentials (the gateway's own token errors map to 401 as well)."""

    code = "invalid_token"


class BadEncoding(InvalidInput):
    """The body's Content-Encoding does not decode (400, not 422: the bytes, not the data)."""

    code = "invalid_encoding"


class UnsupportedEncoding(InvalidInput):
    code = "unsupported_encoding"


class TooLarge(InvalidInput):
    code = "payload_too_large"


STATUS: list[tuple[type[ExchangeError], int]] = [
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (BadEncoding, 400),
    (UnsupportedEncoding, 415),
    (TooLarge, 413),
    (InvalidInput, 422),
    (KafkaUnavailable, 503),
    (DependencyUnavailable, 503),
]

log = logging.getLogger("gateway.errors")

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


def invalid_detail(errors: list[dict[str, Any]], shown: int = 3) -> str:
    """The 422 summary names the fields (all of them are in ``errors``)."""
    parts = [f"{e['path'] or 'request'}: {e['reason']}" for e in errors[:shown]]
    more = f" (and {len(errors) - shown} more)" if len(errors) > shown else ""
    return "request body or parameters are invalid: " + "; ".join(parts) + more


def validation_problem(errors: list[Any]) -> JSONResponse:
    found = [
        {"path": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg")} for e in errors
    ]
    return problem(422, "invalid_request", invalid_detail(found), errors=found)


def status_for(exc: ExchangeError, table: list[tuple[type[ExchangeError], int]] = STATUS) -> int:
    for cls, status in table:
        if isinstance(exc, cls):
            return status
    return 500


def response_for(
    exc: Exception, table: list[tuple[type[ExchangeError], int]] = STATUS
) -> JSONResponse:
    """The problem+json answer for a domain error or an HTTP exception."""
    if isinstance(exc, ExchangeError):
        status = status_for(exc, table)
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
