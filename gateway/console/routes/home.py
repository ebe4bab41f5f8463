"""The console's home page, its static assets and the language switch."""

from __future__ import annotations

import mimetypes
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from exchange.identity.tokens import Principal
from gateway.access import ANY, PUBLIC, access
from gateway.console import i18n
from gateway.console.session import console_principal
from gateway.console.web import redirect, render, safe_next, set_cookie

router = APIRouter(prefix="/console", include_in_schema=False)
entrances = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@router.get("")
@access(ANY)
async def home(request: Request, me: Principal = Depends(console_principal)) -> Response:
    expires = datetime.fromtimestamp(me.expires_at, UTC).isoformat()
    return render(request, "home.html", principal=me, expires_iso=expires)


@router.get("/static/{name:path}")
@access(PUBLIC)
async def static(name: str) -> Response:
    """The console's own CSS and JavaScript (no CDN, no build step)."""
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file():
        return Response(status_code=404)
    kind = (
        _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    return Response(
        path.read_bytes(),
        media_type=kind,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/lang/{lang}")
@access(PUBLIC)
async def switch_language(request: Request, lang: str, next: str = "/console") -> Response:
    """Remember the chosen language (a preference only: nothing to protect from CSRF)."""
    response = redirect(request, safe_next(next))
    if lang in i18n.LANGS:
        set_cookie(request, response, i18n.COOKIE, lang, max_age=365 * 86400)
    return response


@entrances.get("/")
@access(PUBLIC)
async def root(request: Request) -> Response:
    """A person who types the gateway's address lands in the console (machines use /v1)."""
    return redirect(request, "/console")


@entrances.get("/ui")
@access(PUBLIC)
async def ui(request: Request) -> Response:
    return redirect(request, "/console")
