"""The console's CSRF tokens, language choice, safe redirects, message catalogs and cookie
attributes."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.console import csrf, i18n
from gateway.console.web import CSP, ENV, SESSION_COOKIE, safe_next, set_cookie

TEMPLATES = Path(__file__).resolve().parents[3] / "gateway" / "console" / "templates"


def test_csrf_token_is_bound_to_its_anchor_and_key() -> None:
    key = b"k" * 32
    token = csrf.token(key, "session-a")
    assert csrf.valid(key, "session-a", token)
    assert not csrf.valid(key, "session-b", token)
    assert not csrf.valid(b"j" * 32, "session-a", token)
    assert not csrf.valid(key, "session-a", None)
    assert not csrf.valid(key, None, token)


def test_language_negotiation() -> None:
    assert i18n.negotiate("en", "zh-CN") == "en"
    assert i18n.negotiate(None, "en-GB,en;q=0.9") == "en"
    assert i18n.negotiate(None, "fr;q=1, zh-TW;q=0.5") == "zh-CN"
    assert i18n.negotiate("xx", "") == i18n.DEFAULT
    assert i18n.negotiate(None, "en;q=abc") == i18n.DEFAULT


def test_catalogs_agree_and_cover_every_template_key() -> None:
    en, zh = i18n.catalog("en"), i18n.catalog("zh-CN")
    assert set(en) == set(zh), set(en) ^ set(zh)
    used: set[str] = set()
    for path in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r"""\bt\(["']([a-z0-9_.-]+)["']""", path.read_text()))
    # t("a.b." ~ value) picks one of a family of keys: at least one must exist.
    families = {k for k in used if k.endswith(".")}
    assert all(any(k.startswith(f) for k in en) for f in families), families
    assert used - families <= set(en), sorted(used - families - set(en))
    for key, text in en.items():  # placeholders match across languages
        assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", zh[key])), key


def test_no_inline_script_or_style_in_templates() -> None:
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        # Only scripts from files; data for them may travel in non-executed JSON blocks.
        assert not re.search(r"<script(?![^>]*\b(src=|type=\"application/json\"))", text), path
        assert not re.search(r"\son[a-z]+=|\sstyle=|<style", text), path
    assert ENV.autoescape  # type: ignore[truthy-function]


def test_next_stays_inside_the_console() -> None:
    assert safe_next("/console/admin") == "/console/admin"
    for bad in ("https://evil.example", "//evil.example", "/console//evil", "/other", None):
        assert safe_next(bad) == "/console"


def _cookie_app(public_url: str | None) -> Starlette:
    """set_cookie as the console calls it, in an app whose settings name ``public_url``."""

    async def page(request: Request) -> Response:
        response = Response("ok")
        set_cookie(request, response, SESSION_COOKIE, "v")
        return response

    app = Starlette(routes=[Route("/", page)])
    app.state.services = SimpleNamespace(settings=SimpleNamespace(public_url=public_url))
    return app


def _session_cookie(app: Starlette, base_url: str, headers: dict[str, str] | None = None) -> str:
    with TestClient(app, base_url=base_url) as client:
        return client.get("/", headers=headers or {}).headers["set-cookie"].lower()


def test_cookies_are_secure_whenever_the_browser_uses_tls() -> None:
    """TLS at the server, a proxy's X-Forwarded-Proto, or an https public URL (a proxy that
    sets no header): Secure. Plain http on localhost (``make up``): not, or no browser would
    send the cookie back. HttpOnly and SameSite always."""
    plain, public = _cookie_app(None), _cookie_app("https://exchange.example.gov.cn")
    cases = [
        (plain, "https://testserver", {}, True),
        (plain, "http://testserver", {"X-Forwarded-Proto": "https"}, True),
        (plain, "http://testserver", {"X-Forwarded-Proto": "https, http"}, True),
        (public, "http://testserver", {}, True),
        (plain, "http://testserver", {}, False),
        (plain, "http://testserver", {"X-Forwarded-Proto": "http"}, False),
    ]
    for app, base, headers, secure in cases:
        cookie = _session_cookie(app, base, headers)
        assert ("; secure" in cookie) is secure, (base, headers, cookie)
        assert "; httponly" in cookie and "samesite=lax" in cookie
