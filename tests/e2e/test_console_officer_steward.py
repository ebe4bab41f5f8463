"""The steward's and the security officer's console pages in a real Chromium, against the real
gateway and broker.

- a steward approves a request with two of four fields; the subscriber then receives exactly
  those (real publish and poll);
- an officer finds every access to a data subject's records and the in-browser proof check
  passes, then fails once the stored event is tampered with (the insider edit of
  tests/integration/test_audit_tamper.py, undone afterwards);
- a steward of another department is refused on every steward URL, an admin on every audit
  URL, each refusal audited;
- axe-core finds no serious or critical violation on any of these pages; screenshots of each in
  both languages go to the gitignored screenshot directory.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update

from audit.database import AUDIT_DB
from audit.keys import VERIFIER_FILE
from audit.service import Filters
from consent.models import AgreementRow
from exchange.client import ApiError, ExchangeClient
from tests.support.console import (
    TABLET,
    Person,
    axe_check,
    new_page,
    person,
    screenshot,
    sign_in,
)
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, new_client, pull
from tests.support.scenario import person as resident

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

FOUR = ["citizen_id", "name", "district", "income"]
TWO = ["district", "name"]  # sorted, as stored


@dataclass
class World:
    s: Scenario
    steward: Person
    stranger: Person  # a steward of another department
    officer: Person
    admin: Person
    admin_api: ExchangeClient
    second: str  # a second consumer department
    agreement: str = ""


@pytest.fixture(scope="module")
def world(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[World]:
    s = build(admin, gateway.url)
    tag = uuid.uuid4().hex[:6]
    other, office, second = f"other-{tag}", f"office-{tag}", f"second-{tag}"
    for d in (other, office, second):
        admin.call("POST", "/v1/departments", json={"id": d, "name": d, "level": "city"})
    w = World(
        s,
        person(gateway, s.owner, f"stew-{tag}", ["steward"]),
        person(gateway, other, f"stranger-{tag}", ["steward"]),
        person(gateway, office, f"officer-{tag}", ["auditor"]),
        person(gateway, s.owner, f"boss-{tag}", ["admin"]),
        admin,
        second,
    )
    yield w
    s.close()


@pytest.fixture(scope="module")
def steward_page(gateway: ThreadGateway, browser: Any, world: World) -> Any:
    page = new_page(browser, gateway.url, "en")
    sign_in(page, world.steward)
    return page


@pytest.fixture(scope="module")
def officer_page(gateway: ThreadGateway, browser: Any, world: World) -> Any:
    """Signed in once (TOTP steps are single-use: a second sign-in within 30 s would wait)."""
    page = new_page(browser, gateway.url, "en")
    sign_in(page, world.officer)
    pin_key(page, gateway)
    return page


def pages_of(page: Any, name: str) -> None:
    """axe (no serious/critical violation), no CSP violation, screenshots in both languages,
    and no sideways scrolling on a tablet."""
    url = page.url
    assert not axe_check(page), (name, axe_check(page))
    assert not page.csp.violations, page.csp.violations
    screenshot(page, name)
    page.click("a[hreflang=zh-CN]")  # the language switch in the header, as a person would
    ready(page)
    assert page.evaluate("() => document.documentElement.lang") == "zh-CN"
    assert not axe_check(page), (name, "zh-CN")
    screenshot(page, name)
    page.set_viewport_size(TABLET)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.set_viewport_size({"width": 1280, "height": 720})
    page.click("a[hreflang=en]")
    page.goto(url)  # (the switch returns to the path, without the query string)
    ready(page)


def ready(page: Any) -> None:
    """Audit pages finish their in-browser checks before a test looks at them."""
    if page.locator("script[src$='/js/audit.js']").count():
        page.wait_for_selector("body[data-audit-ready]", timeout=20000)


def subscribe_soon(s: Scenario, within: float = 5.0) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            return s.subscriber.subscribe(s.topic)
        except ApiError as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- the steward ------------------------------------------------------------------------------


def test_steward_approves_two_of_four_fields(world: World, steward_page: Any) -> None:
    s = world.s
    ag = s.subscriber.call(
        "POST",
        "/v1/agreements",
        json={
            "topic": s.topic,
            "fields": FOUR,
            "purpose": "public health follow-up",
            "legal_basis": "Regulation on government data sharing, art. 12",
            "valid_until": "2099-01-01T00:00:00Z",
        },
    )
    world.agreement = ag["id"]
    page = steward_page
    page.goto("/console/steward")
    assert page.url.endswith(f"/console/steward/{s.owner}")
    row = page.locator("tr", has=page.locator(f"a[href$='/agreements/{ag['id']}']"))
    assert row.count() == 1
    text = row.inner_text()
    assert s.consumer in text and "Due" in text
    for field, cls in (("citizen_id", "sensitive"), ("income", "secret"), ("name", "public")):
        assert row.locator(f"li:has-text('{field}') .badge.{cls}").count() == 1
    pages_of(page, "steward-inbox")

    page.click(f"a[href$='/agreements/{ag['id']}']")
    assert page.locator("input[name=fields]").count() == 4
    pages_of(page, "steward-request")
    # By keyboard: untick the two fields the requester does not get, then approve.
    for field in ("citizen_id", "income"):
        page.focus(f"input[name=fields][value='{field}']")
        page.keyboard.press("Space")
    page.focus("form[action$='/approve'] button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url("**?done=approve")
    assert "Approved" in page.inner_text("main")
    assert s.steward.call("GET", f"/v1/agreements/{ag['id']}")["granted_fields"] == TWO

    sub = subscribe_soon(s)
    s.publisher.publish(s.topic, [{"key": f"k{i}", "value": resident(i)} for i in range(3)])
    records = pull(s.subscriber, sub, 3)
    assert len(records) == 3
    assert all(set(r["value"]) == set(TWO) for r in records), records

    page.goto(f"/console/steward/{s.owner}/consumers")
    row = page.locator("tr", has_text=s.consumer)
    assert row.count() == 1
    assert "name" in row.inner_text() and "income" not in row.inner_text()
    assert s.subscriber.client_id in row.inner_text()  # its open subscription
    pages_of(page, "steward-consumers")


def test_steward_suspends_resumes_and_rejects_with_a_reason(
    gateway: ThreadGateway, browser: Any, world: World, steward_page: Any
) -> None:
    s, page = world.s, steward_page
    page.goto(f"/console/steward/{s.owner}/agreements/{world.agreement}")
    page.fill("textarea[name=reason]", "audit of the recipient")
    page.click("form[action$='/suspend'] button")
    page.wait_for_url("**?done=suspend")
    assert s.steward.call("GET", f"/v1/agreements/{world.agreement}")["status"] == "suspended"
    page.click("form[action$='/resume'] button")
    page.wait_for_url("**?done=resume")
    assert s.steward.call("GET", f"/v1/agreements/{world.agreement}")["status"] == "approved"
    # Approving again is not possible: the page says why (409), nothing changes.
    r = page.request.post(
        f"/console/steward/{s.owner}/agreements/{world.agreement}/approve",
        form={"csrf": csrf(page), "fields": "name"},
    )
    assert r.status == 409 and "Not done" in r.text()

    # Another department asks too; the steward rejects it, a reason is required.
    other = new_client(world.admin_api, gateway.url, world.second, ["subscriber"])
    ask = other.call(
        "POST",
        "/v1/agreements",
        json={
            "topic": s.topic,
            "fields": ["name"],
            "purpose": "curiosity",
            "valid_until": "2099-01-01T00:00:00Z",
        },
    )
    # Past its response deadline, it is highlighted in the inbox, most urgent first.
    with gateway.services.sessions.begin() as db:
        db.execute(
            update(AgreementRow)
            .where(AgreementRow.id == ask["id"])
            .values(respond_by=datetime.now(UTC) - timedelta(days=2))
        )
    page.goto(f"/console/steward/{s.owner}")
    late = page.locator("tbody tr").first
    assert "overdue" in (late.get_attribute("class") or "")
    assert world.second in late.inner_text() and "Overdue" in late.inner_text()
    assert "2 days ago" in late.inner_text()  # the countdown, counted in the browser
    # ... and it runs: a day later on the browser's clock, the same page says so by itself.
    later = new_page(browser, gateway.url, "en")
    later.clock.install()
    sign_in(later, world.steward)
    later.goto(f"/console/steward/{s.owner}")
    row = later.locator("tbody tr", has_text=world.second)
    assert "2 days ago" in row.inner_text()
    later.clock.fast_forward("24:00:00")
    later.wait_for_function(
        "(t) => document.querySelector('tbody tr.overdue').innerText.includes(t)", arg="3 days ago"
    )
    later.context.close()
    assert not axe_check(page)
    screenshot(page, "steward-inbox-overdue")
    base = f"/console/steward/{s.owner}/agreements/{ask['id']}"
    r = page.request.post(f"{base}/reject", form={"csrf": csrf(page), "reason": " "})
    assert r.status == 422
    page.goto(base)
    page.fill("#reject-reason", "no legal basis given")
    page.click("form[action$='/reject'] button")
    page.wait_for_url("**?done=reject")
    got = s.steward.call("GET", f"/v1/agreements/{ask['id']}")
    assert (got["status"], got["reason"]) == ("rejected", "no legal basis given")
    other.close()


def csrf(page: Any) -> str:
    value: str = page.locator(
        "form[action='/console/sign-out'] input[type=hidden]"
    ).first.get_attribute("value")
    return value


def test_a_steward_of_another_department_is_refused_everywhere(
    gateway: ThreadGateway, browser: Any, world: World
) -> None:
    s, since = world.s, datetime.now(UTC)
    page = new_page(browser, gateway.url, "en")
    sign_in(page, world.stranger)
    base = f"/console/steward/{s.owner}"
    urls = [base, f"{base}/consumers", f"{base}/agreements/{world.agreement}"]
    for url in urls:
        r = page.request.get(url)
        assert r.status == 404, (url, r.status)
        main = r.text().split("<main", 1)[1]  # (the header's language links echo the URL)
        assert world.agreement not in main and s.consumer not in main
    token = csrf(page)
    for action in ("approve", "reject", "suspend", "resume", "revoke"):
        r = page.request.post(
            f"{base}/agreements/{world.agreement}/{action}",
            form={"csrf": token, "fields": "name", "reason": "not mine"},
        )
        assert r.status == 404, (action, r.status)
    assert s.steward.call("GET", f"/v1/agreements/{world.agreement}")["status"] == "approved"
    # Their own inbox works, and does not show the other department's request.
    page.goto("/console/steward")
    assert world.agreement not in page.content()
    refused = gateway.services.audit_review.query(
        Filters(since=since, type="access.denied", client=f"person:{world.stranger.login}"), -1, 50
    )
    assert len(refused) == len(urls) + 5


# -- the security officer ---------------------------------------------------------------------


def pin_key(page: Any, gateway: ThreadGateway) -> None:
    """As an officer does once: paste the key `exchange up` printed (here: from the home)."""
    page.goto("/console/audit/key")
    page.fill("#pin-input", (gateway.home / VERIFIER_FILE).read_text().strip())
    page.click("#pin-pasted")
    page.wait_for_selector("#pinned-status[data-state=ok]")


def test_officer_finds_every_access_to_a_subject_and_checks_the_proofs(
    gateway: ThreadGateway, world: World, officer_page: Any
) -> None:
    s, page = world.s, officer_page
    x = resident(1)["citizen_id"]
    page.goto("/console/audit/key")
    pages_of(page, "audit-key")

    page.goto("/console/audit/subjects")
    page.fill("#subject", x)
    page.click("form[action='/console/audit/subjects'] button[value=html]")
    ready(page)
    assert x not in page.url
    shown = {int(a.inner_text()) for a in page.locator("tbody tr td:first-child a").all()}
    review = gateway.services.audit_review
    every = {e.index for e in review.query(Filters(subject=x), -1, 1000) if e.index <= max(shown)}
    assert shown == every  # every event that touched the subject, nothing else
    rows = page.locator("tbody tr").all_inner_texts()
    assert any("record.published" in r and s.publisher.client_id in r for r in rows)
    assert any("records.delivered" in r and s.subscriber.client_id in r for r in rows)
    assert page.get_attribute("#proof-summary", "data-state") == "ok"
    assert page.locator("td.proof[data-state=ok]").count() == len(shown)
    pages_of(page, "audit-subject")

    published = next(
        e for e in review.query(Filters(subject=x, type="record.published"), -1, 10)
    ).index
    page.goto(f"/console/audit/events/{published}")
    ready(page)
    assert page.get_attribute("#proof-status", "data-state") == "ok"
    assert page.get_attribute("#key-status", "data-state") == "ok"
    pages_of(page, "audit-event")

    with tampered(gateway, published, b'"record.published"', b'"record.publishex"'):
        page.reload()
        ready(page)
        assert page.get_attribute("#proof-status", "data-state") == "fail"
        assert "not in the signed log" in page.inner_text("#proof-status")
        screenshot(page, "audit-event-tampered")
    page.reload()
    ready(page)
    assert page.get_attribute("#proof-status", "data-state") == "ok"


@contextmanager
def tampered(gateway: ThreadGateway, index: int, old: bytes, new: bytes) -> Iterator[None]:
    """Edit one stored event in the audit index as an insider with database access would,
    and put it back afterwards (the session's gateway is shared with other tests)."""

    def rewrite(a: bytes, b: bytes) -> None:
        con = sqlite3.connect(gateway.home / AUDIT_DB, timeout=30)
        with con:
            (entry,) = con.execute(
                "SELECT entry FROM audit_events WHERE idx = ?", (index,)
            ).fetchone()
            assert a in entry
            con.execute(
                "UPDATE audit_events SET entry = ? WHERE idx = ?", (entry.replace(a, b), index)
            )
        con.close()

    rewrite(old, new)
    try:
        yield
    finally:
        rewrite(new, old)


def test_officer_browses_filters_checkpoints_and_charts(
    gateway: ThreadGateway, world: World, officer_page: Any
) -> None:
    s, page = world.s, officer_page
    r = s.subscriber.request("GET", "/v1/audit/events")  # a refusal in the consumer's name
    assert r.status_code == 403
    page.goto("/console/audit")
    page.fill("#f-type", "schema.*")
    page.fill("#f-client", s.publisher.client_id)
    page.click("form.filters button[type=submit]")
    types = page.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert types and all(t.startswith("schema.") for t in types)
    page.goto("/console/audit")
    page.fill("#f-department", s.consumer)
    page.check("input[name=denied]")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("tbody tr")
    outcomes = page.locator("tbody tr td:nth-child(7)").all_inner_texts()
    assert outcomes and set(outcomes) == {"denied"}
    pages_of(page, "audit-events")
    with page.expect_download() as dl:
        page.click("a[href*='format=jsonl']")
    lines = dl.value.path().read_text().splitlines()
    assert len(lines) == len(outcomes) + 1  # the checkpoint line, then one per event

    for bad in (
        "/console/audit?from=yesterday",
        "/console/audit?from=2026-11-30T10:00&to=2026-11-30T09:00",
        "/console/audit?type=schema*",
        "/console/audit?after=x",
        "/console/audit/events/-1",
        "/console/audit/events/99999999999",
        "/console/audit/export?format=xml",
        "/console/audit/checkpoints?before=abc",
        "/console/audit/activity?range=1y",
    ):
        status = page.request.get(bad).status
        assert 400 <= status < 500, (bad, status)

    gateway.services.audit_review.checkpoint()
    page.goto("/console/audit/checkpoints")
    ready(page)
    assert page.get_attribute("#chain-summary", "data-state") == "ok"
    pages_of(page, "audit-checkpoints")

    page.goto("/console/audit/activity?range=1h")
    ready(page)
    assert page.locator("#chart-events svg polyline").count() >= 1
    assert s.consumer in page.inner_text("table")
    pages_of(page, "audit-activity")


def test_officer_works_in_the_browsers_time_zone(
    gateway: ThreadGateway, browser: Any, world: World
) -> None:
    """An officer in Beijing (UTC+8) on a server that keeps UTC: a time range typed in local
    time finds the events of that range (and a later range none), filtered by topic too, and
    every time shown is local."""
    s, beijing = world.s, timezone(timedelta(hours=8))
    officer = person(gateway, world.officer.department, f"tz-{uuid.uuid4().hex[:6]}", ["auditor"])
    page = new_page(browser, gateway.url, "en", timezone="Asia/Shanghai")
    sign_in(page, officer)
    assert officer.totp_secret is not None  # an auditor had to enrol a second factor
    s.publisher.publish(s.topic, [{"key": "tz", "value": resident(7)}])
    review = gateway.services.audit_review
    (event,) = review.query(Filters(topic=s.topic, type="record.published"), -1, 1000)[-1:]
    at = datetime.fromisoformat(event.ts).astimezone(beijing)

    def search(start: datetime, end: datetime) -> list[str]:
        page.goto("/console/audit")
        page.fill("#f-from", start.strftime("%Y-%m-%dT%H:%M:%S"))  # as typed: no zone
        page.fill("#f-to", end.strftime("%Y-%m-%dT%H:%M:%S"))
        page.fill("#f-topic", s.topic)
        with page.expect_navigation():
            page.click("form.filters button[type=submit]")
        ready(page)
        return page.locator("tbody tr td:first-child a").all_inner_texts()

    found = search(at - timedelta(minutes=2), at + timedelta(minutes=2))
    assert str(event.index) in found, (event.ts, found)
    rows = page.locator("tbody tr td:nth-child(6)").all_inner_texts()
    assert set(rows) == {s.topic}
    shown = page.locator(f"tbody tr:has(a[href$='/events/{event.index}']) time")
    text = shown.inner_text().replace("\u202f", " ")  # (ICU puts a narrow space before PM)
    # Beijing's wall clock (medium style in English: "3:04:05 PM"), not the server's UTC.
    assert at.strftime("%-I:%M:%S %p") in text, (text, event.ts)
    assert (shown.get_attribute("title") or "").startswith(
        at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert str(event.index) not in search(at + timedelta(minutes=1), at + timedelta(hours=1))


def test_an_admin_is_refused_on_every_audit_url(
    gateway: ThreadGateway, browser: Any, world: World
) -> None:
    since = datetime.now(UTC)
    key = (gateway.home / VERIFIER_FILE).read_text().strip()
    page = new_page(browser, gateway.url, "en")
    sign_in(page, world.admin)
    gets = [
        "/console/audit",
        "/console/audit/events/0",
        "/console/audit/subjects",
        "/console/audit/export?format=csv",
        "/console/audit/checkpoints",
        "/console/audit/activity",
        "/console/audit/key",
    ]
    for url in gets:
        r = page.request.get(url)
        assert r.status == 403, (url, r.status)
        assert key not in r.text()
    r = page.request.post(
        "/console/audit/subjects", form={"csrf": csrf(page), "subject": resident(1)["citizen_id"]}
    )
    assert r.status == 403
    refused = gateway.services.audit_review.query(
        Filters(since=since, type="authz.denied", client=f"person:{world.admin.login}"), -1, 50
    )
    assert len(refused) == len(gets) + 1


def test_steward_revokes_after_confirming(world: World, steward_page: Any) -> None:
    """Last: revoking asks first (a dialog), then the consumer's subscription is refused."""
    s, page = world.s, steward_page
    page.goto(f"/console/steward/{s.owner}/agreements/{world.agreement}")
    page.once("dialog", lambda d: d.dismiss())
    page.click("form[action$='/revoke'] button")
    assert s.steward.call("GET", f"/v1/agreements/{world.agreement}")["status"] == "approved"
    page.once("dialog", lambda d: d.accept())
    page.click("form[action$='/revoke'] button")
    page.wait_for_url("**?done=revoke")
    assert s.steward.call("GET", f"/v1/agreements/{world.agreement}")["status"] == "revoked"
    page.goto(f"/console/steward/{s.owner}/consumers")
    assert s.consumer not in page.inner_text("main")
    with pytest.raises(ApiError) as refused:
        subscribe_soon(s, within=0)
    assert refused.value.status == 403
