"""A person changes their own password in the console, in a real Chromium against the real
gateway: the current password (and an admin's fresh TOTP code) is checked, a weak new one is
refused with the reasons, wrong answers are audited and throttled like sign-in, and every
other browser of the person is signed out."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.console import (
    axe_check,
    events,
    new_page,
    person,
    screenshot,
    sign_in,
    submit_password,
    totp_code,
)
from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
NEW = "a brand new passphrase"
SUBMIT = "form[action='/console/account/password'] button[type=submit]"


def change(page: Any, current: str, new: str, again: str | None = None) -> None:
    page.goto("/console/account")
    page.fill("#current", current)
    page.fill("#new", new)
    page.fill("#again", new if again is None else again)
    page.click(SUBMIT)


def session_cookie(page: Any) -> str:
    return str(next(c["value"] for c in page.context.cookies() if c["name"] == "exchange_session"))


def signed_in(gateway: ThreadGateway, session: str) -> bool:
    r = httpx.get(f"{gateway.url}/console", cookies={"exchange_session": session})
    return r.status_code == 200


def test_person_changes_password(gateway: ThreadGateway, browser: Any, dept: str) -> None:
    since = datetime.now(UTC)
    me = person(gateway, dept, f"pw-{uuid.uuid4().hex[:6]}", ["steward"])
    actor = f"person:{me.login}"
    laptop, tablet = new_page(browser, gateway.url, "en"), new_page(browser, gateway.url, "zh-CN")
    sign_in(laptop, me)
    sign_in(tablet, me)
    old_laptop, old_tablet = session_cookie(laptop), session_cookie(tablet)
    # An access token the person got through /docs (the grant's redeem issues exactly this).
    token = gateway.services.tokens.issue_person(me.login, dept, me.roles, "console")
    bearer = {"Authorization": f"Bearer {token.access_token}"}
    assert httpx.get(f"{gateway.url}/v1/catalog", headers=bearer).status_code == 200

    change(laptop, "not my password", NEW)
    assert "The current password is wrong" in laptop.inner_text("#account-error")
    laptop.goto("/console/account")  # past the browser's own minlength check: the server's
    laptop.eval_on_selector_all("input[minlength]", "els => els.forEach(e => e.minLength = 0)")
    laptop.fill("#current", me.password)
    laptop.fill("#new", "aaaaaa")
    laptop.fill("#again", "aaaaaa")
    laptop.click(SUBMIT)
    error = laptop.inner_text("#account-error")
    assert "at least 12 characters" in error and "5 different characters" in error, error
    assert laptop.locator("#account-error li").count() == 2
    change(laptop, me.password, NEW, NEW + "!")
    assert "the two new passwords differ" in laptop.inner_text("#account-error")
    assert not axe_check(laptop)
    assert signed_in(gateway, old_tablet)  # nothing changed so far

    tablet.goto("/console/account")
    assert "修改密码" in tablet.inner_text("main")
    assert not axe_check(tablet)
    screenshot(tablet, "account")

    change(laptop, me.password, NEW)
    assert "Your password was changed" in laptop.inner_text("#account-changed")
    assert laptop.locator("form[action='/console/sign-out']").count() == 1  # still signed in
    screenshot(laptop, "account")
    assert session_cookie(laptop) != old_laptop  # a fresh session for this browser
    assert not signed_in(gateway, old_laptop) and not signed_in(gateway, old_tablet)
    assert httpx.get(f"{gateway.url}/v1/catalog", headers=bearer).status_code == 401
    tablet.goto("/console")
    assert "/oauth/authorize" in tablet.url  # the other browser must sign in again
    assert not laptop.csp.violations and not tablet.csp.violations

    submit_password(tablet, me)  # the old password no longer works
    assert "账号或密码错误" in tablet.inner_text("#signin-error")
    me.password = NEW
    tablet.context.clear_cookies()
    sign_in(tablet, me)

    failed = events(gateway, since, "person.password_change_failed", actor)
    assert [e.data["reason"] for e in failed] == ["bad_password"] + ["weak_password"] * 2
    assert all(e.outcome == "denied" and e.department == dept for e in failed)
    changed = events(gateway, since, "person.password_changed", actor)
    assert len(changed) == 1 and changed[0].data["other_sessions_ended"] == 1


def test_admin_needs_a_code_and_failures_lock_out(
    gateway: ThreadGateway, browser: Any, dept: str
) -> None:
    since = datetime.now(UTC)
    boss = person(gateway, dept, f"pwboss-{uuid.uuid4().hex[:6]}", ["admin"])
    page = new_page(browser, gateway.url, "en")
    sign_in(page, boss)  # enrols the second factor
    page.goto("/console/account")
    assert page.locator("#code").count() == 1
    page.fill("#current", boss.password)
    page.fill("#new", NEW)
    page.fill("#again", NEW)
    page.fill("#code", "000000")
    page.click(SUBMIT)
    assert "That code is not valid" in page.inner_text("#account-error")

    # Wrong current passwords count towards the same lockout as sign-in.
    csrf = page.input_value("form[action='/console/account/password'] input[name=csrf]")
    cookies = {"exchange_session": session_cookie(page)}
    form = {"csrf": csrf, "current": "wrong password", "new": NEW, "again": NEW}
    statuses: list[int] = []
    cookies["exchange_lang"] = "en"
    with httpx.Client(base_url=gateway.url, cookies=cookies) as http:
        while 429 not in statuses and len(statuses) < 10:
            r = http.post("/console/account/password", data=form)
            statuses.append(r.status_code)
    assert statuses[0] == 403 and statuses[-1] == 429, statuses
    assert "Too many failed attempts" in r.text
    retry_after = int(r.headers["Retry-After"])
    actor = f"person:{boss.login}"
    reasons = [
        e.data["reason"] for e in events(gateway, since, "person.password_change_failed", actor)
    ]
    assert reasons[0] == "bad_totp" and "bad_password" in reasons and reasons[-1] == "throttled"
    assert events(gateway, since, "console.lockout", actor)

    time.sleep(retry_after + 0.5)  # the first lockout is short: wait it out, then change
    page.goto("/console/account")
    page.fill("#current", boss.password)
    page.fill("#new", NEW)
    page.fill("#again", NEW)
    page.fill("#code", totp_code(boss))
    page.click(SUBMIT)
    assert "Your password was changed" in page.inner_text("#account-changed")
    assert len(events(gateway, since, "person.password_changed", actor)) == 1
