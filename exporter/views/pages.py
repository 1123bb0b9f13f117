"""`/` and `/static`: two small HTML pages. Every client-controlled string goes through html.escape.

No script and no external asset: clusters are often air-gapped, and the Content-Security-Policy forbids
both. The stylesheet is served by the exporter itself.
"""

from __future__ import annotations

from html import escape

from exporter.hub import ServerState
from exporter.views.sessions import session_state

STYLESHEET_PATH = "/assets/style.css"


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
    def link(href: str, icon: str, label: str) -> str:
        return f'<a class="button" href="{escape(href)}"><span aria-hidden="true">{icon}</span> {label}</a>'

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


def render_sessions_page(state: ServerState) -> str:
    rows = []
    count = 0
    for _, session in state.sessions():
        count += 1
        protocol = session.protocol or "udp"
        status = session_state(session)
        rows.append(
            "<tr>"
            f'<td><span class="badge {protocol}">{escape(protocol.upper())}</span></td>'
            f"<td>{escape(session.common_name)}</td>"
            f"<td>{escape(session.remote_host)}</td>"
            f"<td>{escape(session.remote_port)}</td>"
            f"<td>{escape(session.virtual_address or session.virtual_ipv6_address)}</td>"
            f'<td><span class="state {status.lower()}">{status}</span></td>'
            f"<td>{escape(session.connected_since)}</td>"
            f"<td>{human_bytes(session.bytes_received)}</td>"
            f"<td>{human_bytes(session.bytes_sent)}</td>"
            "</tr>"
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
    body = f"""<header class="banner">
<h1><span aria-hidden="true">&#x1F310;</span> OpenVPN Local Clients</h1>
<p>Active VPN connections and statistics</p>
<a href="/">&larr; Back to Dashboard</a>
</header>
{down}
<div class="stat-card">
<div class="stat-value" id="active-count">{count}</div><div class="stat-label">Active Connections</div>
</div>
{table}
<footer>Showing {count} active connection(s)</footer>"""
    return _page("OpenVPN Local Clients", "sessions", body)
