"""The /static sessions page: the table is capped, the counts are not, rows match the columns they came from."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.testclient import TestClient

from exporter.app import ExporterApp
from exporter.config import parse_config
from exporter.views.pages import PAGE_ROWS

HEADER = (
    "TITLE\tOpenVPN 2.6.15 x86_64-pc-linux-gnu\n"
    "TIME\t2026-11-27 05:14:10\t1795756450\n"
    "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received"
    "\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n"
)
ROUTES = "HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\n"


def status_text(sessions: int, handshakes: int = 0) -> str:
    rows = []
    for i in range(sessions):
        name = "UNDEF" if i < handshakes else f"user{i:06d}"
        address = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        rows.append(
            f"CLIENT_LIST\t{name}\t198.51.100.{i % 250}:{10000 + i}\t{address}\t\t{i * 3}\t{i * 5}"
            f"\t2026-11-27 05:00:00\t1795755600\tUNDEF\t{i}\t{i}\tAES-256-GCM\n"
        )
    return HEADER + "".join(rows) + ROUTES + "GLOBAL_STATS\tMax bcast/mcast queue length\t0\nEND\n"


def page_for(tmp_path: Path, text: str) -> str:
    path = tmp_path / "udp.status"
    path.write_text(text)
    app = ExporterApp(parse_config(f"ovpnudpstatus: {path}\nstale_after: 0\n"))
    with TestClient(app.asgi()) as client:
        response = client.get("/static")
    assert response.status_code == 200
    return response.text


def table_rows(page: str) -> list[str]:
    return re.findall(r"<tr><td>.*?</tr>", page)


def test_a_large_server_shows_the_first_rows_and_says_so(tmp_path: Path) -> None:
    total = PAGE_ROWS + 1_234
    page = page_for(tmp_path, status_text(total, handshakes=2))
    rows = table_rows(page)
    assert len(rows) == PAGE_ROWS
    assert f"Showing the first {PAGE_ROWS:,} of {total:,} sessions" in page
    # The counts still describe every session, not the rows shown.
    assert f'<div class="stat-value" id="active-count">{total - 2}</div>' in page
    assert '<div class="stat-value" id="connecting-count">2</div>' in page
    assert f"Showing {total - 2} active connection(s) and 2 connecting" in page
    # The rows are the file's first rows, in order, with their own values.
    assert '<td class="name" title="UNDEF">UNDEF</td>' in rows[0] and "CONNECTING" in rows[0]
    assert ">user000002</td>" in rows[2] and "ESTABLISHED" in rows[2] and "<td>10.0.0.2</td>" in rows[2]
    last = PAGE_ROWS - 1
    assert f">user{last:06d}</td>" in rows[-1] and f"<td>{10000 + last}</td>" in rows[-1]
    assert f"user{PAGE_ROWS:06d}" not in page


def test_a_server_at_the_cap_shows_every_row_without_the_notice(tmp_path: Path) -> None:
    page = page_for(tmp_path, status_text(PAGE_ROWS))
    assert len(table_rows(page)) == PAGE_ROWS
    assert "Showing the first" not in page
    assert f"Showing {PAGE_ROWS} active connection(s)" in page


def test_a_small_server_is_unchanged(tmp_path: Path) -> None:
    page = page_for(tmp_path, status_text(3))
    assert len(table_rows(page)) == 3
    assert "Showing the first" not in page
    assert "<td>6 B</td><td>10 B</td>" in page  # row 2: 2 * 3 bytes received, 2 * 5 sent


def test_the_headline_is_ovpn_sessions_total_and_handshakes_are_counted_apart(tmp_path: Path) -> None:
    # The case: 10 established sessions and 1 still in the TLS handshake.
    path = tmp_path / "udp.status"
    path.write_text(status_text(11, handshakes=1))
    app = ExporterApp(parse_config(f"ovpnudpstatus: {path}\nstale_after: 0\n"))
    with TestClient(app.asgi()) as client:
        page = client.get("/static").text
        metrics = client.get("/metrics").text
    sessions_total = int(re.search(r"^ovpn_sessions_total (\d+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert sessions_total == 10
    assert f'<div class="stat-value" id="active-count">{sessions_total}</div>' in page
    assert '<div class="stat-value" id="connecting-count">1</div>' in page
    assert "Showing 10 active connection(s) and 1 connecting" in page
    assert len(table_rows(page)) == 11  # the handshaking row is still listed, as CONNECTING
    assert page.count('class="state connecting"') == 1


def test_a_hostile_common_name_stays_text_in_the_cell_and_its_title(tmp_path: Path) -> None:
    hostile = '"><img src=x onerror=alert(1)>'
    page = page_for(tmp_path, status_text(1).replace("user000000", hostile))
    assert hostile not in page
    escaped = "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert f'<td class="name" title="{escaped}">{escaped}</td>' in page


def test_the_landing_page_links_every_endpoint() -> None:
    app = ExporterApp(parse_config("ovpnudpstatus: /nonexistent/udp.status\n"))
    with TestClient(app.asgi()) as client:
        page = client.get("/").text
        hrefs = re.findall(r'href="([^"]+)"', page)
        for href in hrefs:
            assert client.get(href).status_code == 200, href
    assert set(hrefs) >= {"/metrics", "/prom", "/static", "/sessions", "/sessions_local", "/-/healthy", "/-/ready"}
