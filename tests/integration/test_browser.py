"""The pages in a real browser: headless Debian Chromium driven by Playwright, against the lab's exporter."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import pytest

from .conftest import XSS, Deployment, require_or_skip
from .exporterproc import Exporter

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
# The landing page links to every endpoint of SPEC 2.1 (the reference page's four buttons and the rest).
CONTRACT_LINKS = {"/metrics", "/prom", "/static", "/sessions", "/sessions_local", "/-/healthy", "/-/ready"}


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in the main thread while
# it is open, and any later test that calls asyncio.run() would find it.
@pytest.fixture(scope="module")
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
    with open_tab(browser, 1400) as opened:
        yield opened


@contextlib.contextmanager
def open_tab(browser: Any, width: int) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": width, "height": 900})
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
    assert paths >= CONTRACT_LINKS, f"landing page links: {sorted(paths)}"
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
    assert page.evaluate(BROKEN_WORDS_JS)["broken"] == []  # the lab's real rows keep every word whole
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


# Words the layout split across lines, per cell; and cells whose text is cut without its full text on hover.
# A "word" is a run of non-space characters; a Range over it has client rects on more than one line exactly
# when the browser wrapped inside it.
BROKEN_WORDS_JS = """() => {
  const broken = [];
  const cut = [];
  for (const cell of document.querySelectorAll('th, td, a.button, h1, .stat-card')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(m[0]);
      }
    }
    if (cell.tagName === 'TD' && cell.scrollWidth > cell.clientWidth + 1 && cell.title !== cell.textContent) {
      cut.push(cell.textContent);
    }
  }
  return {broken, cut, pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
}"""
WIDTHS = [1280, 1024, 390]
LONG_CN = "a-very-long-common-name-issued-by-the-corporate-pki-for-device-0042.branch-office.example.com"


def layout_status_text(now: int) -> str:
    """A status-version 3 file with what makes cells wide: IPv6 real and tunnel addresses, long names,
    gigabyte counters, and one row still in the TLS handshake (10 established, 1 connecting)."""
    head = (
        "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu\n"
        f"TIME\t2026-11-27 05:14:10\t{now}\n"
        "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received"
        "\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n"
    )
    names = ["alice", "bob.laptop", LONG_CN, "carol-phone", "dave", "erin.workstation", "frank", "grace", "heidi"]
    names += ["ivan-build-runner-07", "UNDEF"]
    rows = []
    for i, name in enumerate(names):
        real = f"2001:db8:85a3:4b1c::{i + 10:x}" if i % 3 == 0 else f"203.0.113.{i + 20}:{50000 + i}"
        v4, v6 = ("", f"fd00:1234:5678:9abc::{i + 4096:x}") if i % 4 == 1 else (f"10.8.0.{i + 2}", "")
        rows.append(
            f"CLIENT_LIST\t{name}\t{real}\t{v4}\t{v6}\t{98765432109 + i}\t{1234567 * (i + 1)}"
            f"\t2026-11-27 04:{i:02d}:00\t{now - 600}\tUNDEF\t{i}\t{i}\tAES-256-GCM\n"
        )
    routes = "HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\n"
    return head + "".join(rows) + routes + "GLOBAL_STATS\tMax bcast/mcast queue length\t0\nEND\n"


@pytest.fixture(scope="module")
def layout_exporter(exporter_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    root = tmp_path_factory.mktemp("layout")
    status = root / "udp.status"
    status.write_text(layout_status_text(int(time.time())))
    exporter = Exporter(exporter_binary, root, {"ovpnudpstatus": str(status), "stale_after": 0})
    try:
        yield exporter
    finally:
        exporter.stop()


@pytest.mark.parametrize("width", WIDTHS)
def test_static_page_never_breaks_inside_a_word(
    layout_exporter: Exporter, browser: Any, artifacts_dir: Path, width: int
) -> None:
    with open_tab(browser, width) as tab:
        page = tab.page
        resp = page.goto(layout_exporter.base + "/static")
        assert resp is not None and resp.status == 200
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(artifacts_dir / f"static-layout-{width}px.png"), full_page=True)
        layout = page.evaluate(BROKEN_WORDS_JS)
        assert layout["broken"] == [], f"at {width} px these words wrap inside: {layout['broken']}"
        assert layout["cut"] == [], f"at {width} px these cells are cut without their text on hover"
        # The page itself never scrolls sideways: a wide table scrolls inside its card.
        assert layout["pageWidth"] <= layout["viewport"], layout
        # The headline is ovpn_sessions_total; the handshaking row is counted apart.
        sessions_total = layout_exporter.metrics().value("ovpn_sessions_total")
        assert sessions_total == 10
        assert page.inner_text("#active-count") == str(int(sessions_total))
        assert page.inner_text("#connecting-count") == "1"
        assert page.locator("tbody tr").count() == 11
        # The long name is cut, whole on hover.
        cell = page.locator("td.name", has_text="a-very-long")
        assert cell.get_attribute("title") == LONG_CN
        tab.assert_clean()


@pytest.mark.parametrize("width", WIDTHS)
def test_landing_page_keeps_words_whole(
    layout_exporter: Exporter, browser: Any, artifacts_dir: Path, width: int
) -> None:
    with open_tab(browser, width) as tab:
        page = tab.page
        resp = page.goto(layout_exporter.base + "/")
        assert resp is not None and resp.status == 200
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(artifacts_dir / f"landing-{width}px.png"), full_page=True)
        layout = page.evaluate(BROKEN_WORDS_JS)
        assert layout["broken"] == [], f"at {width} px these words wrap inside: {layout['broken']}"
        assert layout["pageWidth"] <= layout["viewport"], layout
        tab.assert_clean()
