"""`/` and `/static`: two small HTML pages. Every client-controlled string goes through html.escape.

No script and no external asset: clusters are often air-gapped, and the Content-Security-Policy forbids
both. The stylesheet is served by the exporter itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape
from itertools import chain, islice

from exporter.model import HANDSHAKE_CN
from exporter.state import ServerState
from exporter.views.columns import live_tables, protocol_label

STYLESHEET_PATH = "/assets/style.css"
# A browser table of 100,000 rows is tens of megabytes that nobody scrolls through; /sessions has them all.
PAGE_ROWS = 5_000
_PAGE_COLUMNS = (
    "protocol", "common_name", "remote_host", "remote_port", "virtual_address", "virtual_ipv6_address",
    "connected_since", "bytes_received", "bytes_sent",
)  # fmt: skip


def _page(title: str, body_class: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f'<link rel="stylesheet" href="{STYLESHEET_PATH}">\n'
        f'</head>\n<body class="{body_class}">\n{body}\n</body>\n</html>\n'
    )


def render_landing(version: str, telemetry_path: str) -> str:
    def link(href: str, icon: str, label: str, extra: str = "") -> str:
        return f'<a class="button{extra}" href="{escape(href)}"><span aria-hidden="true">{icon}</span> {label}</a>'

    body = f"""<main class="card">
<h1><span aria-hidden="true">&#x1F512;</span> OpenVPN Exporter</h1>
<p class="subtitle">Monitoring Dashboard</p>
<section>
<h2>Metrics</h2>
{link(telemetry_path, "&#x1F4CA;", "Exporter Metrics")}
{link("/prom", "&#x2699;&#xFE0F;", "Internal Exporter Metrics")}
</section>
<section>
<h2>Clients &amp; Sessions</h2>
{link("/static", "&#x1F465;", "Local Clients")}
{link("/sessions_local", "&#x1F4CB;", "Local Sessions JSON")}
{link("/sessions", "&#x1F4C4;", "Sessions JSON")}
</section>
<section>
<h2>Health</h2>
<div class="pair">
{link("/-/healthy", "&#x1F49A;", "Healthy", " small")}
{link("/-/ready", "&#x2705;", "Ready", " small")}
</div>
</section>
<footer>OpenVPN Exporter v{escape(version)}</footer>
</main>"""
    return _page("OpenVPN Exporter", "landing", body)


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{count} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _page_rows(state: ServerState) -> Iterator[tuple[str, str, str, str, str, str, str, int, int]]:
    """The first PAGE_ROWS sessions as plain tuples, read from the columns: no Session rows are built."""
    tables = live_tables(state)
    every = chain.from_iterable(zip(*(getattr(t, name) for name in _PAGE_COLUMNS), strict=True) for t in tables)
    return islice(every, PAGE_ROWS)


def _row(protocol: str, name: str, host: str, port: str, address: str, since: str, received: int, sent: int) -> str:
    protocol = protocol_label(protocol)
    status = "CONNECTING" if name == HANDSHAKE_CN else "ESTABLISHED"
    # The CN is the one free-text column: a long one is cut with an ellipsis and shown whole on hover.
    shown = escape(name)
    return (
        "<tr>"
        f'<td><span class="badge {protocol}">{escape(protocol.upper())}</span></td>'
        f'<td class="name" title="{shown}">{shown}</td>'
        f"<td>{escape(host)}</td>"
        f"<td>{escape(port)}</td>"
        f"<td>{escape(address)}</td>"
        f'<td><span class="state {status.lower()}">{status}</span></td>'
        f'<td class="since">{escape(since)}</td>'
        f"<td>{human_bytes(received)}</td>"
        f"<td>{human_bytes(sent)}</td>"
        "</tr>"
    )


def _stat(value: int, label: str, ident: str, extra: str = "") -> str:
    return (
        f'<div class="stat-card{extra}"><div class="stat-value" id="{ident}">{value}</div>'
        f'<div class="stat-label">{label}</div></div>'
    )


def render_sessions_page(state: ServerState) -> str:
    tables = live_tables(state)
    count = sum(map(len, tables))
    # The headline is ovpn_sessions_total: rows still in the TLS handshake (CN UNDEF) are not sessions yet.
    connecting = sum(t.count_of("common_name", HANDSHAKE_CN) for t in tables)
    established = count - connecting
    rows = [
        _row(protocol, name, host, port, v4 or v6, since, received, sent)
        for protocol, name, host, port, v4, v6, since, received, sent in _page_rows(state)
    ]
    truncated = (
        f'<p class="truncated">Showing the first {PAGE_ROWS:,} of {count:,} sessions;'
        ' <a href="/sessions_local">/sessions_local</a> lists them all.</p>\n'
        if count > PAGE_ROWS
        else ""
    )
    if rows:
        table = (
            '<div class="table-card"><table>\n<thead><tr>'
            "<th>Protocol</th><th>Remote ID (CN)</th><th>Remote Host</th><th>Remote Port</th>"
            "<th>Tunnel IP</th><th>State</th><th>Established</th><th>Bytes In</th><th>Bytes Out</th>"
            "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table></div>"
        )
    else:
        table = '<div class="table-card empty"><p>No active connections.</p></div>'
    down = (
        ""
        if state.up
        else '<p class="warning">No status source is up: OpenVPN may be down or its status file stale.</p>'
    )
    pending = f" and {connecting} connecting" if connecting else ""
    body = f"""<header class="banner">
<h1><span aria-hidden="true">&#x1F310;</span> OpenVPN Local Clients</h1>
<p>Active VPN connections and statistics</p>
<a href="/">&larr; Back to Dashboard</a>
</header>
{down}
<div class="stats">
{_stat(established, "Active Connections", "active-count")}
{_stat(connecting, "Connecting (TLS handshake)", "connecting-count", " secondary")}
</div>
{truncated}{table}
<footer>Showing {established} active connection(s){pending}</footer>"""
    return _page("OpenVPN Local Clients", "sessions", body)
