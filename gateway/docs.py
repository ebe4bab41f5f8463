"""``/docs``: the Swagger UI served from this gateway (no CDN: it works on an air-gapped
network), under the console's strict Content-Security-Policy, with the OAuth2 security
scheme declared so its Authorize button works: a person signs in with the authorization
code + PKCE (the console's public client), a machine with client credentials.

The assets are swagger-ui-dist 5 from npm, vendored in ``gateway/swagger_ui`` (version 5
renders OpenAPI 3.1, which FastAPI writes); the page and its start script are ours
(Swagger's own index page carries an inline script the CSP refuses). Each operation's security
requirement is derived from its ``@access`` declaration (``gateway.access``), so the
document says which roles (scopes) a route wants without a second source of truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, Response

from exchange.identity.roles import ALL_ROLES
from gateway.access import ANY, CLIENT, OWN, PUBLIC, access, app_routes, declared
from gateway.console.web import PAGE_HEADERS

ASSETS = Path(__file__).parent / "swagger_ui"
OURS = Path(__file__).parent / "console" / "static"
SERVED = {
    "swagger-ui.css": (ASSETS, "text/css"),
    "swagger-ui-bundle.js": (ASSETS, "text/javascript"),
    "oauth2-redirect.js": (ASSETS, "text/javascript"),
    "docs-init.js": (OURS, "text/javascript"),
}
SCHEME = "oauth2"
BASIC = "clientBasic"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>exchange gateway · API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs-init.js"></script>
</body>
</html>
"""

_REDIRECT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signing in</title></head>
<body><script src="/docs/assets/oauth2-redirect.js"></script></body></html>
"""


def security_for(allowed: frozenset[str]) -> list[dict[str, list[str]]] | None:
    """The operation's OpenAPI security requirement, from its access declaration."""
    if PUBLIC in allowed:
        return None
    if CLIENT in allowed:
        return [{BASIC: []}]
    scopes = [] if ANY in allowed else sorted({t.removeprefix(OWN) for t in allowed} - {"*"})
    return [{SCHEME: scopes}]


def openapi_with_security(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    flows = {
        "authorizationCode": {
            "authorizationUrl": "/oauth/authorize",
            "tokenUrl": "/oauth/token",
            "scopes": {r: f"role {r}" for r in sorted(ALL_ROLES)},
        },
        "clientCredentials": {
            "tokenUrl": "/oauth/token",
            "scopes": {r: f"role {r}" for r in sorted(ALL_ROLES)},
        },
    }
    schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[SCHEME] = {"type": "oauth2", "flows": flows}
    schemes[BASIC] = {"type": "http", "scheme": "basic", "description": "client id and secret"}
    for route in app_routes(app.routes):
        decl = declared(app, route)
        if not isinstance(route, APIRoute) or not route.include_in_schema or decl is None:
            continue
        requirement = security_for(decl.allowed)
        ops = doc.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            op = ops.get(method.lower())
            if op is not None and requirement is not None:
                op["security"] = requirement
    app.openapi_schema = doc
    return doc


def install(app: FastAPI) -> None:
    app.openapi = lambda: openapi_with_security(app)  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    @access(PUBLIC)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_PAGE, headers=PAGE_HEADERS)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    @access(PUBLIC)
    async def docs_redirect() -> HTMLResponse:
        return HTMLResponse(_REDIRECT, headers=PAGE_HEADERS)

    @app.get("/docs/assets/{name}", include_in_schema=False)
    @access(PUBLIC)
    async def docs_asset(name: str) -> Response:
        found = SERVED.get(name)
        if found is None:
            return Response(status_code=404)
        folder, kind = found
        return Response(
            (folder / name).read_bytes(),
            media_type=kind,
            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
        )
