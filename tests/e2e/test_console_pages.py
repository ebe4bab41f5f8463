"""The administrator's and the developer's pages in a real Chromium against the real gateway
and broker: onboarding a county department and its first client (the secret shown once),
registering an incompatible schema (the reason shown), publishing a sample; every page
checked with axe-core (no serious or critical violation), free of CSP violations, usable at
1280x720 and tablet width, and photographed in both languages (``.screenshots/``)."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import httpx
import pytest

from exchange.client import AuthenticationFailed, ExchangeClient
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
from tests.support.scenario import PERSON_SCHEMA
from tests.support.scenario import person as resident

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def check_page(page: Any, name: str) -> None:
    """No serious accessibility violation, no CSP violation; a screenshot in each language."""
    found = axe_check(page)
    assert not found, (name, found, page.content()[:600])
    assert not page.csp.violations, page.csp.violations
    screenshot(page, name)


def both_languages(page: Any, name: str) -> None:
    """check_page in this language and the other; then, at tablet width, nothing wider than
    the screen (no sideways scrolling)."""
    check_page(page, name)
    other = "English" if page.evaluate("() => document.documentElement.lang") != "en" else "中文"
    page.click(f"header nav.lang a:has-text('{other}')")
    check_page(page, name)
    viewport = page.viewport_size
    page.set_viewport_size(TABLET)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.set_viewport_size(viewport)


def test_admin_onboards_a_county_and_its_first_client(
    gateway: ThreadGateway, browser: Any, dept: str
) -> None:
    boss: Person = person(gateway, dept, f"boss-{uuid.uuid4().hex[:6]}", ["admin"])
    page = new_page(browser, gateway.url, "zh-CN")
    sign_in(page, boss)
    tag = uuid.uuid4().hex[:6]
    parent = ""
    for level in ("region", "city", "county", "township"):
        page.goto("/console/admin/departments")
        page.fill("#dept-id", f"{level}-{tag}")
        page.fill("#dept-name", f"{level.title()} {tag}")
        page.select_option("#dept-level", level)
        if parent:
            page.select_option("#dept-parent", parent)
        page.click("form[action='/console/admin/departments'] button")
        page.wait_for_url(f"**/console/admin/departments/{level}-{tag}")
        parent = f"{level}-{tag}"
    page.goto("/console/admin/departments")
    tree = page.locator("#department-tree")
    nested = tree.locator(f"li:has(> a[href$='region-{tag}']) li:has(> a[href$='city-{tag}'])")
    county = nested.locator(f"li:has(> a[href$='county-{tag}'])")
    assert county.locator(f"a[href$='township-{tag}']").count() == 1
    both_languages(page, "admin-departments")

    page.goto(f"/console/admin/departments/county-{tag}")
    page.fill("#client-name", "county app")
    page.check("input[name=roles][value=publisher]")
    page.click(f"form[action='/console/admin/departments/county-{tag}/clients'] button")
    client_id = page.inner_text("#new-client-id").strip()
    secret = page.inner_text("#new-client-secret").strip()
    with ExchangeClient(gateway.url, client_id, secret) as county:
        assert county.token()  # the secret shown is the client's
    both_languages(page, "admin-client-secret")
    page.reload()
    assert page.locator("#new-client-secret").count() == 0  # shown once, gone on reload
    assert secret not in page.content()
    assert client_id in page.inner_text("#clients")

    # Tablet width: the menu folds above the content and the page still works.
    page.set_viewport_size(TABLET)
    page.goto("/console/admin/health")
    assert (
        page.inner_text("#dependencies").count("正常")
        + page.inner_text("#dependencies").count("up")
        >= 2
    )
    page.set_viewport_size({"width": 1280, "height": 720})
    for path, name in (
        ("/console/admin/people", "admin-people"),
        ("/console/admin/topics", "admin-topics"),
        ("/console/admin/keys", "admin-keys"),
    ):
        page.goto(path)
        both_languages(page, name)


def test_admin_rotates_and_disables_clients_manages_people_topics_keys_and_health(
    gateway: ThreadGateway, browser: Any, dept: str
) -> None:
    """The rest of the administrator's pages, each change checked where it matters: against
    the token endpoint, the sign-in page, the catalog, the key set and the health table."""
    tag = uuid.uuid4().hex[:6]
    boss = person(gateway, dept, f"boss-{tag}", ["admin"])
    page = new_page(browser, gateway.url, "en")
    sign_in(page, boss)

    # Clients: a rotated secret is shown once and the old one stops working; disable.
    page.goto(f"/console/admin/departments/{dept}")
    page.fill("#client-name", "ledger app")
    for role in ("publisher", "subscriber", "registry:write", "registry:read"):
        page.check(f"input[name=roles][value='{role}']")
    page.click(f"form[action='/console/admin/departments/{dept}/clients'] button")
    client_id = page.inner_text("#new-client-id").strip()
    first = page.inner_text("#new-client-secret").strip()
    page.goto(f"/console/admin/departments/{dept}")
    page.once("dialog", lambda d: d.accept())  # "rotate? the old secret stops working"
    page.click(f"form[action$='/clients/{client_id}/rotate'] button")
    page.wait_for_selector("#new-client-secret")
    assert page.inner_text("#new-client-id").strip() == client_id
    second = page.inner_text("#new-client-secret").strip()
    assert second != first
    with pytest.raises(AuthenticationFailed), ExchangeClient(gateway.url, client_id, first) as c:
        c.token()
    app = ExchangeClient(gateway.url, client_id, second)

    # Topics: created on the page, in the catalog at once.
    topic, subject = f"{dept}.ledger-{tag}", f"{dept}.ledger-{tag}-value"
    r = app.request(
        "POST",
        f"/registry/subjects/{subject}/versions",
        json={"schema": json.dumps(PERSON_SCHEMA)},
    )
    assert r.status_code == 200, r.text
    page.goto("/console/admin/topics")
    page.select_option("#topic-owner", dept)
    page.fill("#topic-name", topic)
    page.fill("#topic-subject", subject)
    page.select_option("#topic-share", "unconditional")
    with page.expect_navigation():
        page.click("form[action='/console/admin/topics'] button")
    assert topic in page.inner_text("#topics")
    assert any(e["topic"] == topic for e in app.call("GET", "/v1/catalog"))

    # Health: a subscription three records behind shows a lag of 4 offsets (Kafka's measure:
    # the three records and the commit marker of the publish's transaction), no dead letters.
    sub = app.subscribe(topic)
    app.publish(topic, [{"key": f"k{i}", "value": resident(i)} for i in range(3)])
    page.goto("/console/admin/health")
    page.select_option("#health-topic", topic)
    with page.expect_navigation():
        page.click("form[action='/console/admin/health'] button")
    row = page.locator("#subscriptions tbody tr", has_text=sub)
    assert row.locator("td").all_inner_texts()[1:] == [topic, dept, "4", "0"]
    deps = page.locator("#dependencies tbody tr").all_inner_texts()
    assert {d.split("\t")[0] for d in deps} >= {"Kafka broker", "Database", "Key management (KMS)"}
    both_languages(page, "admin-health")

    page.goto(f"/console/admin/departments/{dept}")
    page.click(f"form[action$='/clients/{client_id}/disable'] button")
    page.wait_for_url(f"**/console/admin/departments/{dept}")
    with pytest.raises(AuthenticationFailed), ExchangeClient(gateway.url, client_id, second) as c:
        c.token()
    app.close()

    # People: the first password is shown once and works; no auditor from an admin;
    # disabling a person signs them out at once.
    page.goto("/console/admin/people")
    page.fill("#person-login", f"clerk-{tag}")
    page.fill("#person-name", "Clerk")
    page.select_option("#person-dept", dept)
    page.check("input[name=roles][value=steward]")
    with page.expect_navigation():
        page.click("form[action='/console/admin/people'] button")
    assert page.inner_text("#new-login").strip() == f"clerk-{tag}"
    clerk = Person(f"clerk-{tag}", page.inner_text("#new-password").strip(), dept, ["steward"])
    page.reload()
    assert page.locator("#new-password").count() == 0  # shown once
    other = new_page(browser, gateway.url, "en")
    sign_in(other, clerk)
    page.fill("#person-login", f"officer-{tag}")
    page.fill("#person-name", "Officer")
    page.check("input[name=roles][value=auditor]")
    page.click("form[action='/console/admin/people'] button")
    assert page.locator("#form-error").count() == 1
    assert f"officer-{tag}" not in page.inner_text("#people")
    page.click(f"form[action='/console/admin/people/clerk-{tag}/disable'] button")
    page.wait_for_url("**/console/admin/people")
    other.goto("/console")
    assert "/oauth/authorize" in other.url  # signed out everywhere

    # Keys: rotating adds a token-signing key, which becomes the active one.
    page.goto("/console/admin/keys")
    before = page.locator("#signing-keys li").count()
    page.once("dialog", lambda d: d.accept())
    page.click("form[action='/console/admin/keys/signing/rotate'] button")
    page.wait_for_selector("#rotated")
    assert page.locator("#signing-keys li").count() == before + 1
    active = page.locator("#signing-keys li code").first.inner_text()
    assert active in page.inner_text("#rotated")  # "now signing with <the new kid>"


def test_developer_sees_why_a_schema_is_incompatible(
    gateway: ThreadGateway, browser: Any, dept: str, admin: ExchangeClient
) -> None:
    dev = person(
        gateway,
        dept,
        f"dev-{uuid.uuid4().hex[:6]}",
        ["registry:write", "publisher", "subscriber"],
    )
    subject = f"{dept}.residents-value"
    page = new_page(browser, gateway.url, "en")
    sign_in(page, dev)
    page.goto(f"/console/dev/compatibility?subject={subject}")
    page.fill("#schema", json.dumps(PERSON_SCHEMA, indent=2))
    page.click("button[data-action=register]")
    page.wait_for_url(f"**/console/dev/schemas/{subject}")
    assert "Registered" in page.inner_text("#registered")

    incompatible = copy.deepcopy(PERSON_SCHEMA)
    incompatible["fields"][3]["type"] = "string"  # income: double -> string
    page.goto(f"/console/dev/compatibility?subject={subject}")
    page.fill("#schema", json.dumps(incompatible))
    page.click("button[data-action=check]")
    assert "Not compatible" in page.inner_text("#verdict")
    assert "income" in page.inner_text("#reasons")
    assert "secret" in page.inner_text("#rules")  # the classification rules of each field
    both_languages(page, "dev-compatibility")
    page.click("header nav.lang a:has-text('English')")
    page.fill("#schema", json.dumps(incompatible))
    page.click("button[data-action=register]")
    assert "Not registered" in page.inner_text("#refused")
    assert "income" in page.inner_text("#result")

    evolved = copy.deepcopy(PERSON_SCHEMA)
    evolved["fields"].append(
        {
            "name": "email",
            "type": ["null", "string"],
            "default": None,
            "classification": "sensitive",
        }
    )
    page.goto(f"/console/dev/compatibility?subject={subject}")
    page.fill("#schema", json.dumps(evolved))
    page.click("button[data-action=register]")
    page.wait_for_url(f"**/console/dev/schemas/{subject}")
    assert "email" in page.inner_text("#diff")
    both_languages(page, "dev-history")

    topic = f"{dept}.residents"
    admin.call(
        "POST",
        "/v1/topics",
        json={
            "name": topic,
            "owner": dept,
            "partitions": 1,
            "value_subject": subject,
            "share_type": "unconditional",  # its public fields reach the test subscription
        },
    )
    page.goto(f"/console/dev/catalog?q={dept}")
    page.click(f"a[href='/console/dev/catalog/{topic}']")
    assert page.locator("#fields .badge.sensitive").count() >= 3  # classification badges
    both_languages(page, "dev-entry")
    asyncapi = page.request.get("/console/dev/asyncapi")  # the catalog's AsyncAPI document
    assert asyncapi.ok and asyncapi.json()["asyncapi"].startswith("3.")
    assert topic in json.dumps(asyncapi.json()["channels"])
    for share, listed in (("unconditional", True), ("conditional", False)):
        page.goto("/console/dev/catalog")  # search by owner and share type
        page.select_option("#dept", dept)
        page.select_option("#share", share)
        with page.expect_navigation():
            page.click("form[role=search] button")
        assert (topic in page.inner_text("#catalog")) is listed, share
    page.goto("/console/dev/catalog")
    both_languages(page, "dev-catalog")

    page.goto("/console/dev/try")
    page.select_option("#topic", topic)
    with page.expect_navigation():  # a test subscription of the department, from the latest
        page.click("#subscribe")
    sub = page.get_attribute("#test-subscription", "data-sub")
    page.select_option("#topic", topic)
    page.fill("#record", json.dumps({"name": "only a name"}))
    page.click("form[action='/console/dev/try'] button")
    assert "citizen_id" in page.inner_text("#form-error")  # the schema's reason, per field
    record = {
        "citizen_id": "330100000000000009",
        "name": "Resident 9",
        "district": "Xihu",
        "income": 1.5,
        "phone": None,
        "address": {"street": "9 Wensan Road", "city": "Hangzhou"},
        "email": None,
    }
    page.fill("#record", json.dumps(record))
    page.click("form[action='/console/dev/try'] button")
    assert "offset" in page.inner_text("#published-offsets")
    # The sample arrives on the test subscription as the department receives it: the public
    # name, never the sensitive citizen id or the secret income (no agreement grants them).
    page.wait_for_selector("#arrived li:has-text('Resident 9')", timeout=60_000)
    arrived = page.inner_text("#arrived")
    assert "330100000000000009" not in arrived and "income" not in arrived, arrived
    assert page.get_attribute("#test-subscription", "data-sub") == sub
    with page.expect_navigation():  # the same subscription is reused
        page.click("#subscribe")
    assert page.get_attribute("#test-subscription", "data-sub") == sub
    page.wait_for_selector("#arrived li:has-text('Resident 9')", timeout=60_000)  # replayed
    both_languages(page, "dev-try")


def test_pages_refuse_other_roles(gateway: ThreadGateway, browser: Any, dept: str) -> None:
    reader = person(gateway, dept, f"reader-{uuid.uuid4().hex[:6]}", ["registry:read"])
    page = new_page(browser, gateway.url, "en")
    sign_in(page, reader)
    for path in ("/console/admin/departments", "/console/admin/health", "/console/dev/try"):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
    nav = page.inner_text("nav.side")
    assert "Catalog" in nav and "System health" not in nav  # the menu shows what opens
    for entrance in ("/", "/ui"):  # the addresses a person tries first lead to the console
        page.goto(entrance)
        assert page.url == f"{gateway.url}/console", (entrance, page.url)


def test_docs_work_offline_with_an_authorize_button(
    gateway: ThreadGateway, browser: Any, dept: str
) -> None:
    """/docs loads nothing from another host, runs under the CSP, and offers OAuth2 sign-in:
    the authorization code with PKCE (people) and client credentials (machines). A person
    authorises through the PKCE popup and Swagger UI's token opens the API."""
    # The document is built on first use (seconds on a loaded machine): not the UI's problem.
    assert httpx.get(f"{gateway.url}/openapi.json", timeout=120).status_code == 200
    page = new_page(browser, gateway.url, "en")
    hosts: set[str] = set()
    page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    page.goto("/docs")
    page.wait_for_selector("button.authorize", timeout=90_000)
    assert hosts == {gateway.url.split("/")[2]}, hosts
    assert not page.csp.violations, page.csp.violations
    html = page.content()
    assert "cdn" not in html.lower() and "jsdelivr" not in html.lower()
    page.click("button.authorize")
    dialog = page.inner_text(".modal-ux")
    assert "authorizationCode" in dialog and "clientCredentials" in dialog
    spec = page.evaluate("() => fetch('/openapi.json').then(r => r.json())")
    flows = spec["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["authorizationCode"]["authorizationUrl"] == "/oauth/authorize"
    publish = spec["paths"]["/v1/topics/{topic}/records"]["post"]
    assert publish["security"] == [{"oauth2": ["publisher"]}]
    assert "security" not in spec["paths"]["/healthz"]["get"]

    reader = person(gateway, dept, f"docs-{uuid.uuid4().hex[:6]}", ["registry:read"])
    box = page.locator(".modal-ux .auth-container", has_text="authorizationCode")
    box.locator("label[for='registry:read-authorizationCode-checkbox-oauth2']").click()
    with page.expect_popup() as popup:
        box.locator("button.authorize").click()
    signin = popup.value
    signin.fill("#login", reader.login)
    signin.fill("#password", reader.password)
    with signin.expect_event("close"):  # the redirect page hands the code back and closes
        signin.click("form[action='/oauth/authorize'] button[type=submit]")
    # Swagger UI redeemed the code at /oauth/token: the flow says so and offers to log out.
    box.locator("button[aria-label='Remove authorization']").wait_for()  # "Logout"
    assert "Authorized" in box.inner_text()
    token = page.evaluate(
        "() => window.ui.authSelectors.authorized().toJS().oauth2.token.access_token"
    )
    r = httpx.get(f"{gateway.url}/v1/catalog", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text[:300]
    assert hosts == {gateway.url.split("/")[2]}, hosts
    assert not page.csp.violations, page.csp.violations
