"""People sign in to the console in a real Chromium against the real gateway and broker:
authorization code + PKCE at the built-in server, password, TOTP for admins and auditors,
lockout, CSRF, session expiry, sign-out and sign-out everywhere, each audited."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from exchange.identity.models import ConsoleSessionRow
from tests.support.console import (
    axe_check,
    events,
    new_page,
    person,
    screenshot,
    sign_in,
    submit_password,
)
from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def test_developer_signs_in_and_out(gateway: ThreadGateway, browser: Any, dept: str) -> None:
    since = datetime.now(UTC)
    dev = person(gateway, dept, f"dev-{uuid.uuid4().hex[:6]}", ["registry:read"])
    page = new_page(browser, gateway.url, "zh-CN")
    sign_in(page, dev)
    assert page.url.endswith("/console")
    assert "当前登录" in page.inner_text("main")
    assert not axe_check(page)
    screenshot(page, "home")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["exchange_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert not page.csp.violations
    page.click("form[action='/console/sign-out'] button")
    page.wait_for_url("**/console/sign-out")
    page.goto("/console")
    assert "/oauth/authorize" in page.url  # sent to sign in again
    actor = f"person:{dev.login}"
    assert [e.data["method"] for e in events(gateway, since, "console.signin", actor)] == [
        "password"
    ]
    assert len(events(gateway, since, "console.signout", actor)) == 1


def test_wrong_password_then_lockout(gateway: ThreadGateway, browser: Any, dept: str) -> None:
    since = datetime.now(UTC)
    victim = person(gateway, dept, f"victim-{uuid.uuid4().hex[:6]}", ["steward"])
    page = new_page(browser, gateway.url, "en")
    submit_password(page, victim, "not the password at all")
    assert "Wrong login or password" in page.inner_text("#signin-error")
    wait = 0
    while wait < 4:  # a few free failures, then lockouts that double each time
        page.fill("#password", "still not the password")
        page.click("form[action='/oauth/authorize'] button[type=submit]")
        found = re.search(r"in (\d+) s", page.inner_text("#signin-error"))
        wait = int(found.group(1)) if found else 0
        if 0 < wait < 4:
            time.sleep(wait)
    # Locked: even the right password is refused for now (and costs no hashing).
    page.fill("#password", victim.password)
    page.click("form[action='/oauth/authorize'] button[type=submit]")
    assert "Too many failed attempts" in page.inner_text("#signin-error")
    actor = f"person:{victim.login}"
    reasons = [e.data["reason"] for e in events(gateway, since, "console.signin_failed", actor)]
    assert reasons[:3] == ["bad_password"] * 3 and reasons[-1] == "throttled"
    assert events(gateway, since, "console.lockout", actor)
    assert not events(gateway, since, "console.signin", actor)


def test_admin_needs_totp(gateway: ThreadGateway, browser: Any, dept: str) -> None:
    since = datetime.now(UTC)
    boss = person(gateway, dept, f"boss-{uuid.uuid4().hex[:6]}", ["admin"])
    page = new_page(browser, gateway.url, "en")
    submit_password(page, boss)
    # First sign-in: the secret is shown once, and a code is required before anything else.
    assert page.locator("#totp-secret").count() == 1
    assert page.inner_text("#totp-uri").startswith("otpauth://totp/")
    assert not axe_check(page)
    screenshot(page, "totp-enrol")
    page.fill("#code", "000000")
    page.click("form[action='/oauth/authorize/second-factor'] button")
    assert "not valid" in page.inner_text("#totp-error")
    page.context.clear_cookies()
    sign_in(page, boss)  # enrols (a new secret: the first was never confirmed)
    assert boss.totp_secret is not None
    page.context.clear_cookies()
    submit_password(page, boss)
    assert page.locator("#totp-secret").count() == 0  # enrolled: never shown again
    assert page.locator("#code").count() == 1
    actor = f"person:{boss.login}"
    assert "bad_totp" in [
        e.data["reason"] for e in events(gateway, since, "console.signin_failed", actor)
    ]
    assert [e.data["method"] for e in events(gateway, since, "console.signin", actor)] == [
        "password+totp"
    ]


def test_csrf_refused(gateway: ThreadGateway, browser: Any, dept: str) -> None:
    since = datetime.now(UTC)
    dev = person(gateway, dept, f"csrf-{uuid.uuid4().hex[:6]}", ["registry:read"])
    page = new_page(browser, gateway.url, "en")
    sign_in(page, dev)
    session = next(c for c in page.context.cookies() if c["name"] == "exchange_session")
    forged = httpx.post(
        f"{gateway.url}/console/sign-out-everywhere",
        cookies={"exchange_session": session["value"]},
        data={"csrf": "forged"},
    )
    assert forged.status_code == 403
    other_site = httpx.post(
        f"{gateway.url}/console/sign-out-everywhere",
        cookies={"exchange_session": session["value"]},
        data={"csrf": page.input_value("input[name=csrf]")},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403
    page.reload()
    assert page.locator("form[action='/console/sign-out']").count() == 1  # still signed in
    assert len(events(gateway, since, "console.csrf_refused", f"person:{dev.login}")) == 2


def _age(gateway: ThreadGateway, login: str, seconds: int) -> None:
    """Pretend the person's sessions were last used ``seconds`` ago (the idle limit decides)."""
    with gateway.services.sessions.begin() as s:
        s.execute(
            update(ConsoleSessionRow)
            .where(ConsoleSessionRow.login == login)
            .values(last_seen=ConsoleSessionRow.last_seen - seconds)
        )


def test_session_expiry_and_sign_out_everywhere(
    gateway: ThreadGateway, browser: Any, dept: str
) -> None:
    dev = person(gateway, dept, f"multi-{uuid.uuid4().hex[:6]}", ["registry:read"])
    laptop, tablet = new_page(browser, gateway.url), new_page(browser, gateway.url)
    sign_in(laptop, dev)
    sign_in(tablet, dev)
    _age(gateway, dev.login, gateway.settings.console_idle_seconds + 1)
    laptop.goto("/console")
    assert "/oauth/authorize" in laptop.url  # idle too long: signed out
    sign_in(laptop, dev)
    laptop.click("form[action='/console/sign-out-everywhere'] button")
    tablet.goto("/console")
    assert "/oauth/authorize" in tablet.url
    laptop.goto("/console")
    assert "/oauth/authorize" in laptop.url


def test_disabled_person_cannot_sign_in(gateway: ThreadGateway, browser: Any, dept: str) -> None:
    gone = person(gateway, dept, f"gone-{uuid.uuid4().hex[:6]}", ["registry:read"])
    gateway.services.people.set_disabled(gone.login, True, by={"admin"})
    page = new_page(browser, gateway.url, "en")
    submit_password(page, gone)
    assert "Wrong login or password" in page.inner_text("#signin-error")


def test_sign_in_error_and_signed_out_pages_by_keyboard_in_both_languages(
    gateway: ThreadGateway, browser: Any, dept: str
) -> None:
    """The pages around the persona pages: axe-clean and CSP-clean in both languages, and the
    whole way through by keyboard alone (the skip link first, then the page)."""
    for lang, refused, signed_out in (
        ("zh-CN", "无权访问", "已退出"),
        ("en", "do not allow", "signed out"),
    ):
        me = person(gateway, dept, f"kb-{uuid.uuid4().hex[:6]}", ["registry:read"])
        page = new_page(browser, gateway.url, lang)
        page.goto("/console")
        assert page.evaluate("() => document.activeElement.id") == "login"  # autofocus
        clean(page, "signin")
        page.keyboard.type(me.login)
        page.keyboard.press("Tab")
        page.keyboard.type(me.password)
        with page.expect_navigation(url=re.compile(r".*/console$")):
            page.keyboard.press("Enter")
        page.keyboard.press("Tab")  # the first stop on every page: skip to the content
        assert page.evaluate("() => document.activeElement.getAttribute('href')") == "#main"
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "main"

        response = page.goto("/console/admin/health")  # not this person's page
        assert response is not None and response.status == 403
        assert refused in page.inner_text("main").lower(), page.inner_text("main")
        clean(page, "error")

        page.goto("/console")
        page.focus("form[action='/console/sign-out'] button")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert signed_out in page.inner_text("main").lower(), page.inner_text("main")
        clean(page, "signed-out")


def clean(page: Any, name: str) -> None:
    assert not axe_check(page), (name, axe_check(page))
    assert not page.csp.violations, page.csp.violations
    screenshot(page, name)
