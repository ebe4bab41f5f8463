"""The console's cookies over the real gateway: behind TLS (a proxy saying
``X-Forwarded-Proto: https``) every cookie of the sign-in — the CSRF anchor, the pending flow,
the session — carries ``Secure``, ``HttpOnly`` and ``SameSite``; over plain http on localhost
(``make up``) the same cookies work without ``Secure`` (a browser would neither keep nor
send a ``Secure`` cookie over http, so nobody could sign in). The whole sign-in runs over
HTTP with the cookies handed on by hand, as a browser would (httpx's jar would withhold
``Secure`` cookies from an http URL)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.console import person
from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@dataclass
class Cookie:
    value: str
    attributes: dict[str, str]  # lower-case name -> value ("" for flags)


def set_cookies(r: httpx.Response) -> dict[str, Cookie]:
    found = {}
    for header in r.headers.get_list("set-cookie"):
        first, *rest = (part.strip() for part in header.split(";"))
        name, _, value = first.partition("=")
        attrs = {k.lower(): v for k, _, v in (a.partition("=") for a in rest)}
        found[name] = Cookie(value, attrs)
    return found


def sign_in(gateway: ThreadGateway, dept: str, headers: dict[str, str]) -> dict[str, Cookie]:
    """Every cookie the gateway set (``name``) or expired (``name!``) during one sign-in
    (the console's PKCE flow) and sign-out."""
    me = person(gateway, dept, f"ck-{uuid.uuid4().hex[:6]}", ["registry:read"])
    jar: dict[str, str] = {}
    seen: dict[str, Cookie] = {}

    def go(method: str, url: str, **kw: Any) -> httpx.Response:
        r = http.request(method, url, cookies=dict(jar), headers=headers, **kw)
        for name, c in set_cookies(r).items():
            expired = c.attributes.get("max-age") == "0"
            seen[name + "!" if expired else name] = c
            if expired:
                jar.pop(name, None)
            else:
                jar[name] = c.value
        return r

    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        r = go("GET", "/console/sign-in")
        assert r.status_code == 303
        r = go("GET", r.headers["location"])
        assert r.status_code == 200, r.text[:300]
        hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', r.text))
        form = {**hidden, "login": me.login, "password": me.password}
        r = go("POST", "/oauth/authorize", data=form)
        assert r.status_code == 303, r.text[:300]
        target = urlsplit(r.headers["location"])
        r = go("GET", f"{target.path}?{target.query}")
        assert r.status_code == 303 and r.headers["location"] == "/console"
        r = go("GET", "/console")
        assert r.status_code == 200  # signed in
        csrf = re.findall(r'name="csrf" value="([^"]+)"', r.text)[0]
        assert go("POST", "/console/sign-out", data={"csrf": csrf}).status_code == 200
        assert "exchange_session" not in jar
    return seen


SIGN_IN_COOKIES = ("exchange_pre", "exchange_flow", "exchange_session", "exchange_flow!")
SIGN_OUT_COOKIES = ("exchange_session!",)


def test_behind_tls_every_cookie_is_secure(gateway: ThreadGateway, dept: str) -> None:
    seen = sign_in(gateway, dept, {"X-Forwarded-Proto": "https"})
    assert {*SIGN_IN_COOKIES, *SIGN_OUT_COOKIES} <= set(seen), sorted(seen)
    for name, c in seen.items():
        assert "secure" in c.attributes, name
        assert "httponly" in c.attributes, name
        assert c.attributes.get("samesite", "").lower() in ("lax", "strict"), name
    assert seen["exchange_pre"].attributes["samesite"].lower() == "strict"


def test_plain_http_on_localhost_works_without_secure(gateway: ThreadGateway, dept: str) -> None:
    seen = sign_in(gateway, dept, {})
    assert {*SIGN_IN_COOKIES, *SIGN_OUT_COOKIES} <= set(seen), sorted(seen)
    for name, c in seen.items():
        assert "secure" not in c.attributes, name
        assert "httponly" in c.attributes and c.attributes.get("samesite"), name
