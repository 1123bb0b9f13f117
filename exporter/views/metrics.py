"""`/metrics`: the OpenVPN metrics of the original exporter, byte-compatible with its output.

Families come sorted by name and samples by label value, as the Go client library prints them.
Sessions that share a `client` label (duplicate-cn, one CN on several instances of one protocol) are
summed into one series: the contract forbids two samples with one label set, and a sum is what
"bytes this client moved" means. Rows still in the TLS handshake (CN `UNDEF`) are not sessions yet.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from exporter.config import MetricsConfig
from exporter.hub import UNKNOWN_VERSION, ServerState
from exporter.views.exposition import escape_label, family, sample


def wanted(common_name: str, metrics: MetricsConfig) -> bool:
    if metrics.include and not any(fnmatchcase(common_name, p) for p in metrics.include):
        return False
    return not any(fnmatchcase(common_name, p) for p in metrics.exclude)


def per_client_totals(state: ServerState, metrics: MetricsConfig) -> dict[str, list[int]]:
    totals: dict[str, list[int]] = {}
    filtering = bool(metrics.include or metrics.exclude)
    for _, session in state.sessions():
        if session.in_handshake or (filtering and not wanted(session.common_name, metrics)):
            continue
        label = f"{session.common_name}_{session.protocol or 'udp'}"
        entry = totals.get(label)
        if entry is None:
            totals[label] = [session.bytes_received, session.bytes_sent]
        else:
            entry[0] += session.bytes_received
            entry[1] += session.bytes_sent
    return totals


def session_count(state: ServerState) -> int:
    return sum(1 for _, s in state.sessions() if not s.in_handshake)


def render_metrics(state: ServerState, metrics: MetricsConfig) -> str:
    lines: list[str] = []
    if metrics.per_client:
        totals = per_client_totals(state, metrics)
        if totals:
            ordered = sorted(totals.items())
            escaped = [(escape_label(label), values) for label, values in ordered]
            lines += family(
                "ovpn_bytes_in_total", "counter", "Total number of bytes received",
                [f'ovpn_bytes_in_total{{client="{label}"}} {v[0]}' for label, v in escaped],
            )  # fmt: skip
            lines += family(
                "ovpn_bytes_out_total", "counter", "Total number of bytes sent",
                [f'ovpn_bytes_out_total{{client="{label}"}} {v[1]}' for label, v in escaped],
            )  # fmt: skip
    infos = sorted(
        {
            (r.snapshot.product, r.snapshot.version or UNKNOWN_VERSION)
            for r in state.readings
            if r.snapshot is not None and r.snapshot.kind == "server"
        }
    )
    if infos:
        lines += family(
            "ovpn_info", "counter", "Software info",
            [sample("ovpn_info", (("product", p), ("version", v)), 1) for p, v in infos],
        )  # fmt: skip
    lines += family(
        "ovpn_sessions_total", "gauge", "Total number of active sessions",
        [sample("ovpn_sessions_total", (), session_count(state))],
    )  # fmt: skip
    lines += family(
        "probe_success", "gauge", "OpenVPN Status",
        [sample("probe_success", (("version", state.version()),), 1 if state.up else 0)],
    )  # fmt: skip
    if metrics.extended or metrics.kumina_compat:  # opt-in families; the default output is untouched
        from exporter.views.extended import render_extra

        lines += render_extra(state, metrics)
    return "\n".join(lines) + "\n"
