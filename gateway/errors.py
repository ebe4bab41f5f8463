"""Map domain errors to RFC 9457 problem+json responses with a stable ``code``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from exchange.errors import ExchangeError
from exchange.identity.tokens import InvalidToken
from gateway import problem as problem_status
from gateway.denials import audit_denial
from gateway.problem import (
    HTTP_CODES,
    UNCARRIABLE,
    invalid_detail,
    problem,
    validation_problem,
)

log = logging.getLogger(__name__)

# The gateway's token errors come first; the rest is the shared table (gateway.problem).
STATUS: list[tuple[type[ExchangeError], int]] = [(InvalidToken, 401), *problem_status.STATUS]


def status_for(exc: ExchangeError) -> int:
    return problem_status.status_for(exc, STATUS)


def response_for(exc: Exception) -> JSONResponse:
    """The problem+json answer for a domain error or an HTTP exception."""
    return problem_status.response_for(exc, STATUS)


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


def install(app: FastAPI) -> None:
    @app.exception_handler(ExchangeError)
    async def _domain(request: Request, exc: ExchangeError) -> JSONResponse:
        return await answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return await answer(request, exc)

    async def _uncarriable(request: Request, exc: Exception) -> JSONResponse:
        # Logged by type and route only: the offending value may be a record's content.
        log.warning("refused %s on %s", type(exc).__name__, request.url.path)
        return response_for(exc)

    for cls in UNCARRIABLE:
        app.add_exception_handler(cls, _uncarriable)


__all__ = [
    "HTTP_CODES",
    "STATUS",
    "UNCARRIABLE",
    "invalid_detail",
    "problem",
    "response_for",
    "status_for",
]
