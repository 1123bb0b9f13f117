"""`/metrics`: the OpenVPN metrics of the original exporter, byte-compatible with its output.

Families come sorted by name and samples by label value, as the Go client library prints them.
Sessions that share a `client` label (duplicate-cn, one CN on several instances of one protocol) are
summed into one series: the contract forbids two samples with one label set, and a sum is what
"bytes this client moved" means. Rows still in the TLS handshake (CN `UNDEF`) are not sessions yet.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from itertools import chain
from operator import itemgetter

from exporter.config import MetricsConfig
from exporter.hub import UNKNOWN_VERSION, ServerState
from exporter.model import HANDSHAKE_CN, Session
from exporter.views.exposition import escape_label, family, sample

_common_name = itemgetter(0)  # Session.common_name
_protocol = itemgetter(4)  # Session.protocol
_received = itemgetter(7)  # Session.bytes_received
_sent = itemgetter(8)  # Session.bytes_sent
_first = itemgetter(0)
_second = itemgetter(1)


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
    sessions = _live_sessions(state)
    return len(sessions) - list(map(_common_name, sessions)).count(HANDSHAKE_CN)


def _live_sessions(state: ServerState) -> list[Session]:
    return list(chain.from_iterable(r.snapshot.sessions for r in state.live_readings() if r.snapshot is not None))


def _client_samples(state: ServerState, metrics: MetricsConfig) -> tuple[list[str], list[int], list[int]]:
    """Sorted `client` labels (escaped) with their byte totals.

    Without include/exclude filters the work is done column by column with C-level loops (map, zip,
    sorted, %-formatting); with filters, per_client_totals() does it session by session.
    """
    if metrics.include or metrics.exclude:
        totals = per_client_totals(state, metrics)
        labels = sorted(totals)
        received = [totals[label][0] for label in labels]
        sent = [totals[label][1] for label in labels]
    else:
        sessions = _live_sessions(state)
        names = list(map(_common_name, sessions))
        if HANDSHAKE_CN in names:
            sessions = [s for s in sessions if not s.in_handshake]
            names = list(map(_common_name, sessions))
        protocols = list(map(_protocol, sessions))
        if "" in protocols:
            protocols = [p or "udp" for p in protocols]
        keys = list(map("%s_%s".__mod__, zip(names, protocols, strict=True)))
        pairs: dict[str, tuple[int, int]] | dict[str, list[int]]
        pairs = dict(zip(keys, zip(map(_received, sessions), map(_sent, sessions), strict=True), strict=True))
        if len(pairs) != len(keys):  # sessions share a label: sum them
            pairs = per_client_totals(state, metrics)
        labels = sorted(pairs)
        values = list(map(pairs.__getitem__, labels))
        received = list(map(_first, values))
        sent = list(map(_second, values))
    joined = "".join(labels)
    if "\\" in joined or '"' in joined or "\n" in joined:
        labels = list(map(escape_label, labels))
    return labels, received, sent


def render_metrics(state: ServerState, metrics: MetricsConfig) -> str:
    lines: list[str] = []
    if metrics.per_client:
        labels, received, sent = _client_samples(state, metrics)
        if labels:
            lines += family(
                "ovpn_bytes_in_total", "counter", "Total number of bytes received",
                ["\n".join(map('ovpn_bytes_in_total{client="%s"} %d'.__mod__, zip(labels, received, strict=True)))],
            )  # fmt: skip
            lines += family(
                "ovpn_bytes_out_total", "counter", "Total number of bytes sent",
                ["\n".join(map('ovpn_bytes_out_total{client="%s"} %d'.__mod__, zip(labels, sent, strict=True)))],
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
