"""The request-limits middleware over a tiny app: sizes, streamed bodies, JSON guard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Scope

from gateway.limits import RequestLimits

SMALL, BULK = 1_000, 10_000


def build() -> tuple[TestClient, list[int]]:
    seen: list[int] = []

    async def echo(request: Request) -> Response:
        body = await request.body()
        seen.append(len(body))
        return JSONResponse({"n": len(body)})

    app = Starlette(
        routes=[
            Route("/small", echo, methods=["POST", "GET"]),
            Route("/bulk", echo, methods=["POST"]),
        ]
    )

    def refuse(scope: Scope, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 422)
        return JSONResponse({"refused": type(exc).__name__}, status_code=status)

    wrapped: Any = RequestLimits(
        app,
        max_bytes=SMALL,
        bulk_max_bytes=BULK,
        is_bulk=lambda scope: scope["path"] == "/bulk",
        refuse=refuse,
    )
    return TestClient(wrapped, raise_server_exceptions=False), seen


def chunks(total: int, size: int = 100) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


def test_bodies_within_limits_reach_the_route() -> None:
    client, seen = build()
    assert client.post("/small", content=b"x" * SMALL).json() == {"n": SMALL}
    assert client.post("/bulk", content=b"x" * BULK).json() == {"n": BULK}
    assert client.get("/small").json() == {"n": 0}
    assert seen == [SMALL, BULK, 0]


@pytest.mark.parametrize(("path", "limit"), [("/small", SMALL), ("/bulk", BULK)])
def test_declared_length_over_the_limit_is_413_before_the_route(path: str, limit: int) -> None:
    client, seen = build()
    r = client.post(path, content=b"x" * (limit + 1))
    assert r.status_code == 413 and seen == []


@pytest.mark.parametrize(("path", "limit"), [("/small", SMALL), ("/bulk", BULK)])
def test_streamed_body_over_the_limit_is_413(path: str, limit: int) -> None:
    client, seen = build()
    r = client.post(path, content=chunks(limit + 100))  # chunked: no Content-Length
    assert r.status_code == 413 and seen == []


def test_json_too_deep_or_with_lone_surrogates_never_reaches_the_route() -> None:
    client, seen = build()
    deep = b'{"a":' * 100 + b"1" + b"}" * 100
    assert client.post("/small", content=deep).json() == {"refused": "TooDeep"}
    assert client.post("/small", content=b'{"k": "\\ud800"}').json() == {"refused": "InvalidText"}
    assert client.post("/small", content=b"[" * 400 + b"]" * 400).status_code == 422
    assert seen == []
    # not JSON at all, or a form: for the route to judge
    assert client.post("/small", content=b"{nope").status_code == 200
    assert client.post("/small", content=b"grant_type=client_credentials").status_code == 200
