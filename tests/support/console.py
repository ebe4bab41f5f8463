"""Drive the web console in a real headless Chromium (Debian's ``chromium`` via Playwright).

- :func:`launch` — one browser per test module (``chromium.launch(executable_path=...)``);
- :func:`person` — a person account created through the real service (as ``exchange up``
  acts: every manager role at once), with a password;
- :func:`sign_in` — the whole sign-in through the pages, TOTP included (the enrolment
  secret is read off the page, as a person would type it into an authenticator app);
- :func:`axe_check` — axe-core (vendored under ``tests/support/vendor``, never served by the
  product) run on the current page: the serious and critical violations (and any message
  key shown untranslated, e.g. ``[admin.health.dep.kms]``);
- :func:`screenshot` — saved under ``.screenshots/`` (gitignored) for the README.

Every page is also watched for Content-Security-Policy violations (:class:`CspWatch`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from audit.service import Filters
from exchange.identity import totp
from exchange.identity.service import SYSTEM
from tests.support.gateway import ThreadGateway

CHROMIUM = os.environ.get("EXCHANGE_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".screenshots"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PASSWORD = "correct horse battery staple"
VIEWPORT = {"width": 1280, "height": 720}
TABLET = {"width": 820, "height": 1180}


@dataclass
class Person:
    login: str
    password: str
    department: str
    roles: list[str]
    totp_secret: bytes | None = None
    last_step: int = field(default=0)


def person(
    gateway: ThreadGateway, department: str, login: str, roles: list[str], password: str = PASSWORD
) -> Person:
    gateway.services.people.create(department, login, login.title(), password, roles, by=SYSTEM)
    return Person(login, password, department, roles)


@contextmanager
def launch() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class CspWatch:
    """Collects the browser's CSP violation reports of a page (none may occur)."""

    def __init__(self, page: Any) -> None:
        self.violations: list[str] = []
        page.on("console", self._on_console)

    def _on_console(self, message: Any) -> None:
        text = str(message.text)
        if "Content Security Policy" in text or "Refused to" in text:
            self.violations.append(text)


def new_page(
    browser: Any,
    url: str,
    lang: str = "en",
    viewport: dict[str, int] = VIEWPORT,
    timezone: str | None = None,
) -> Any:
    """A page in a fresh context (no cookies) in ``lang``, in the machine's time zone unless
    ``timezone`` (an IANA name) says otherwise."""
    context = browser.new_context(
        base_url=url, viewport=viewport, locale=lang, timezone_id=timezone
    )
    # Injected by the browser itself (DevTools), so the page's CSP does not apply to it.
    context.add_init_script(path=str(AXE))
    context.add_cookies([{"name": "exchange_lang", "value": lang, "url": url}])
    page = context.new_page()
    page.csp = CspWatch(page)
    return page


def totp_code(p: Person) -> str:
    """A code newer than the last one used (the server accepts each step once)."""
    assert p.totp_secret is not None
    now = time.time()
    step = max(int(now) // totp.STEP_S, p.last_step + 1)
    if step > int(now) // totp.STEP_S + 1:  # both usable steps spent: wait for the next one
        time.sleep(totp.STEP_S - now % totp.STEP_S + 0.5)
        return totp_code(p)
    p.last_step = step
    return totp.code_at(p.totp_secret, step * totp.STEP_S)


def submit_password(page: Any, p: Person, password: str | None = None) -> None:
    page.goto("/console")
    page.fill("#login", p.login)
    page.fill("#password", password if password is not None else p.password)
    page.click("form[action='/oauth/authorize'] button[type=submit]")


def sign_in(page: Any, p: Person) -> None:
    """Through the pages; enrols the second factor on the first sign-in when required."""
    submit_password(page, p)
    if page.locator("#totp-secret").count():
        text = page.locator("#totp-secret").inner_text().strip()
        p.totp_secret = _b32(text)
    if page.locator("#code").count():
        page.fill("#code", totp_code(p))
        page.click("form[action='/oauth/authorize/second-factor'] button[type=submit]")
    page.wait_for_url(re.compile(r".*/console(\?.*)?$|.*/console/.*"))
    assert page.locator("form[action='/console/sign-out']").count() == 1, page.content()[:2000]


def _b32(text: str) -> bytes:
    import base64

    return base64.b32decode(text + "=" * (-len(text) % 8))


def axe_check(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as shown (WCAG 2.1 A/AA)."""
    result = page.evaluate(
        """async () => {
            const r = await window.axe.run(document, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}
            });
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    found = [v for v in result if v["impact"] in ("serious", "critical")]
    # Not axe's, checked on the same pages: a message key shown instead of its text.
    raw = re.findall(r"\[[a-z]+(?:\.[a-z0-9_-]+)+\]", page.inner_text("body"))
    if raw:
        found.append({"id": "untranslated", "impact": "serious", "nodes": raw[:5]})
    return found


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    lang = page.evaluate("() => document.documentElement.lang")
    path = SCREENSHOTS / f"{name}-{lang}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def events(
    gateway: ThreadGateway, since: datetime, kind: str, actor: str, limit: int = 50
) -> list[Any]:
    """The audit events of ``kind`` by ``actor`` since ``since`` (at most ``limit``)."""
    return gateway.services.audit_review.query(
        Filters(since=since, type=kind, client=actor), -1, limit
    )
