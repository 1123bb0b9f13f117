"""The pages in a real browser: headless Debian Chromium driven by Playwright, against the lab's exporter."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import pytest

from .conftest import XSS, Deployment, require_or_skip

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The landing page links to these (the reference page shows exactly these four buttons) ...
CONTRACT_LINKS = {"/metrics", "/prom", "/static"}
# ... and to the session JSON under one of its two names.
SESSION_LINKS = {"/sessions", "/sessions_local"}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        require_or_skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_or_skip("the playwright package is not installed")
    with sync_playwright() as pw:
        # Debian's Chromium, never a browser downloaded by `playwright install`.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A browser page and what it did besides rendering: dialogs, CSP violations, requests off loopback."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a script ran: {self.dialogs}"
        assert self.csp_violations == []
        assert self.foreign_requests == []


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = Tab(context.new_page())

    def route(r: Any) -> None:
        # Only the exporter on loopback may be contacted; anything else is refused and noted.
        if urlparse(r.request.url).hostname in ("127.0.0.1", "localhost") or r.request.url.startswith("data:"):
            r.continue_()
        else:
            tab.foreign_requests.append(r.request.url)
            r.abort()

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            tab.csp_violations.append(msg.text)

    tab.page.route("**/*", route)
    tab.page.on("dialog", on_dialog)
    tab.page.on("console", on_console)
    try:
        yield tab
    finally:
        context.close()


def test_landing_page_links_work(deployment: Deployment, tab: Tab, artifacts_dir: Path) -> None:
    page = tab.page
    base = deployment.exporter.base
    resp = page.goto(base + "/")
    assert resp is not None and resp.status == 200
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifacts_dir / f"landing-v{deployment.status_version}.png"), full_page=True)
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    targets = {urljoin(base + "/", h) for h in hrefs}
    paths = {urlparse(t).path for t in targets if t.startswith(base)}
    assert paths >= CONTRACT_LINKS and paths & SESSION_LINKS, f"landing page links: {sorted(paths)}"
    for target in sorted(t for t in targets if t.startswith(base)):
        # Follow each link as a user clicking it would: a real navigation in the browser.
        nav = page.goto(target)
        assert nav is not None and nav.status == 200, f"{target}: {nav.status if nav else 'no response'}"
    tab.assert_clean()


def test_static_page_shows_the_lab_clients_as_text(deployment: Deployment, tab: Tab, artifacts_dir: Path) -> None:
    page = tab.page
    # The table is rendered from the same snapshot as the metrics: wait until that shows the whole lab.
    deployment.exporter.poll_metrics(
        lambda s: s.value("ovpn_sessions_total") == deployment.expected_sessions(), what="the whole lab"
    )
    resp = page.goto(deployment.exporter.base + "/static")
    assert resp is not None and resp.status == 200
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifacts_dir / f"static-v{deployment.status_version}.png"), full_page=True)
    rows = page.eval_on_selector_all(
        "table tr", "trs => trs.filter(tr => tr.querySelector('td')).map(tr => tr.innerText)"
    )
    assert len(rows) == deployment.expected_sessions(), rows
    for server in (deployment.udp, deployment.tcp):
        for session in server.truth().rows:
            # One row per session, carrying its CN, real host and tunnel address.
            assert any(
                session.common_name in row and session.real_host in row and session.virtual_address in row
                for row in rows
            ), f"no table row for {session}: {rows}"
    # The hostile CN is shown as text ...
    assert page.get_by_text(XSS, exact=True).count() >= 1
    # ... and never became an element, nor ran.
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("table img").count() == 0
    page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert tab.dialogs == [], f"a script ran: {tab.dialogs}"
    # The way back works too.
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert hrefs, "no link on /static"
    for href in hrefs:
        nav = page.goto(urljoin(deployment.exporter.base + "/static", href))
        assert nav is not None and nav.status == 200, f"{href}: {nav.status if nav else 'no response'}"
    tab.assert_clean()
