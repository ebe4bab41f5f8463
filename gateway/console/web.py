"""Rendering console pages: Jinja2 templates, the language, the CSRF token and the headers
every page carries (a strict Content-Security-Policy: no inline script, nothing from another
origin)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from exchange.errors import DependencyUnavailable
from exchange.identity.sessions import SessionInfo
from exchange.secrets_store import seal, unseal
from gateway.console import csrf, i18n
from gateway.console.nav import visible

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
SESSION_COOKIE = "exchange_session"
_TEMPLATES = Path(__file__).parent / "templates"
ENV = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def is_https(request: Request) -> bool:
    """Whether the browser reached us over TLS, so cookies get ``Secure``: the request's own
    scheme (TLS at uvicorn, or a proxy uvicorn trusts — ``--forwarded-allow-ips``, loopback
    by default — rewrote it), an ``X-Forwarded-Proto: https`` from any proxy, or a public URL
    that is https (the browser can only be using TLS). Each can only add the flag, never
    remove it: a forged header costs the forger their own cookie. Plain http on localhost
    (``make up``) gets no ``Secure``: browsers would neither keep nor send such a cookie
    over http, and nobody could sign in."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    public = request.app.state.services.settings.public_url or ""
    return (
        request.url.scheme == "https"
        or forwarded == "https"
        or public.lower().startswith("https://")
    )


def set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    path: str = "/",
    samesite: str = "lax",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=is_https(request),
        samesite=samesite,  # type: ignore[arg-type]
    )


def delete_cookie(
    request: Request, response: Response, name: str, *, path: str = "/", samesite: str = "lax"
) -> None:
    """Expire a cookie with the attributes it was set with (``Secure`` included)."""
    response.delete_cookie(
        name,
        path=path,
        httponly=True,
        secure=is_https(request),
        samesite=samesite,  # type: ignore[arg-type]
    )


def session_of(request: Request) -> SessionInfo | None:
    found: SessionInfo | None = getattr(request.state, "console_session", None)
    return found


def csrf_anchor(request: Request) -> str:
    """What this browser's CSRF token is bound to: its session, else its pre-session cookie
    (created here on first use; :func:`render` sets it)."""
    raw = request.cookies.get(SESSION_COOKIE) if session_of(request) else None
    if raw:
        return raw
    pre = request.cookies.get(csrf.PRE_COOKIE) or getattr(request.state, "new_pre", None)
    if not pre or len(pre) > 128:
        pre = secrets.token_urlsafe(32)
        request.state.new_pre = pre
    return str(pre)


def csrf_token(request: Request) -> str:
    return csrf.token(request.app.state.services.master_key, csrf_anchor(request))


def context(request: Request) -> dict[str, Any]:
    lang = i18n.language(request)
    me = session_of(request)
    return {
        "request": request,
        "lang": lang,
        "t": i18n.Translator(lang),
        "csrf_field": csrf.FIELD,
        "csrf": csrf_token(request),
        "me": me,
        "nav": visible(me.roles) if me else [],
        "path": request.url.path,
        "here": here(request),
    }


def here(request: Request) -> str:
    """Where the language switch returns to: this page, or after a form (a POST cannot be
    fetched again) the page the form was on."""
    if request.method == "GET":
        query = f"?{request.url.query}" if request.url.query else ""
        return safe_next(request.url.path + query)
    parts = urlsplit(request.headers.get("referer", ""))
    if parts.netloc and parts.netloc != request.headers.get("host"):
        return "/console"
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    ctx = context(request) | values
    html = ENV.get_template(template).render(ctx)
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    finish(request, response)
    return response


def finish(request: Request, response: Response) -> None:
    if getattr(request.state, "flash_taken", False):
        delete_cookie(request, response, FLASH_COOKIE, path="/console", samesite="strict")
    new_pre = getattr(request.state, "new_pre", None)
    if new_pre:
        set_cookie(request, response, csrf.PRE_COOKIE, new_pre, samesite="strict")


def redirect(request: Request, to: str) -> RedirectResponse:
    """303 See Other (after a form: the browser GETs ``to``)."""
    response = RedirectResponse(to, status_code=303, headers=PAGE_HEADERS)
    finish(request, response)
    return response


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (open redirect)."""
    if not target or not target.startswith("/console") or "//" in target or "\\" in target:
        return "/console"
    return target


FLASH_COOKIE = "exchange_flash"


def flash(request: Request, response: Response, values: dict[str, str]) -> None:
    """Something to show once on the next page (a new secret): sealed with the master key,
    read and deleted by :func:`take_flash`, gone after a minute whatever happens."""
    key = request.app.state.services.master_key
    sealed = seal(key, json.dumps(values).encode(), "console-flash").hex()
    set_cookie(
        request, response, FLASH_COOKIE, sealed, max_age=60, path="/console", samesite="strict"
    )


def take_flash(request: Request) -> dict[str, str]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return {}
    request.state.flash_taken = True
    try:
        opened = unseal(
            request.app.state.services.master_key, bytes.fromhex(raw[:8192]), "console-flash"
        )
        values: dict[str, str] = json.loads(opened)
    except (ValueError, DependencyUnavailable):
        return {}
    return values
