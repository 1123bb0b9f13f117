"""Opt-in metric families for `/metrics`: richer OpenVPN metrics and kumina/openvpn_exporter's names.

Both are off by default, and then `/metrics` stays exactly the contract's five families.

`metrics.extended: true` adds per-source families (sessions, up, last update, global stats) and, unless
`per_client: false`, per-session and per-route families whose labels `metrics.session_labels` chooses.
Several sessions that share a label set (duplicate-cn, or labels that do not tell sessions apart) make one
series: bytes summed, connected-since the earliest, and `ovpn_client_sessions` says how many.

`metrics.kumina_compat: true` adds the names, types, HELP texts and label names of kumina/openvpn_exporter
(exporters/openvpn_exporter.go), so dashboards built on it work unchanged. Where that exporter could emit two
samples with one label set (two configured sources reading one file), the samples are merged. Sessions still
in the TLS handshake (CN `UNDEF`) are not counted or labelled, as on the rest of `/metrics`.

No label value here changes while a session lasts: byte counts and timestamps are values, never labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from exporter.config import MetricsConfig
from exporter.model import RouteTable, SessionTable
from exporter.sources.base import Reading
from exporter.state import ServerState
from exporter.views.columns import established_count, established_rows, filtering, protocol_labels, wanted
from exporter.views.exposition import family, sample

Labels = tuple[tuple[str, str], ...]

# kumina's client-mode counters: status line name -> metric name.
KUMINA_CLIENT_COUNTERS = {
    "TUN/TAP read bytes": (
        "openvpn_client_tun_tap_read_bytes_total",
        "Total amount of TUN/TAP traffic read, in bytes.",
    ),
    "TUN/TAP write bytes": (
        "openvpn_client_tun_tap_write_bytes_total",
        "Total amount of TUN/TAP traffic written, in bytes.",
    ),
    "TCP/UDP read bytes": (
        "openvpn_client_tcp_udp_read_bytes_total",
        "Total amount of TCP/UDP traffic read, in bytes.",
    ),
    "TCP/UDP write bytes": (
        "openvpn_client_tcp_udp_write_bytes_total",
        "Total amount of TCP/UDP traffic written, in bytes.",
    ),
    "Auth read bytes": (
        "openvpn_client_auth_read_bytes_total",
        "Total amount of authentication traffic read, in bytes.",
    ),
    "pre-compress bytes": (
        "openvpn_client_pre_compress_bytes_total",
        "Total amount of data before compression, in bytes.",
    ),
    "post-compress bytes": (
        "openvpn_client_post_compress_bytes_total",
        "Total amount of data after compression, in bytes.",
    ),
    "pre-decompress bytes": (
        "openvpn_client_pre_decompress_bytes_total",
        "Total amount of data before decompression, in bytes.",
    ),
    "post-decompress bytes": (
        "openvpn_client_post_decompress_bytes_total",
        "Total amount of data after decompression, in bytes.",
    ),
}


def render_extra(state: ServerState, metrics: MetricsConfig) -> list[str]:
    """The opt-in families, as exposition lines; empty when both options are off."""
    lines: list[str] = []
    if metrics.extended:
        lines += extended_families(state, metrics)
    if metrics.kumina_compat:
        lines += kumina_families(state, metrics)
    return lines


def _label_column(name: str, reading: Reading, table: SessionTable) -> Sequence[str]:
    """The values of one `metrics.session_labels` label, one per row of the table."""
    if name == "client":
        return [f"{cn}_{p}" for cn, p in zip(table.common_name, protocol_labels(table.protocol), strict=True)]
    if name == "protocol":
        return protocol_labels(table.protocol)
    if name == "virtual_address":
        return [v4 or v6 for v4, v6 in zip(table.virtual_address, table.virtual_ipv6_address, strict=True)]
    if name == "source":
        return [reading.name] * len(table)
    column: Sequence[str] = getattr(table, name)  # common_name, username, real_address, client_id
    return column


def _gauge_per_source(name: str, help_text: str, values: list[tuple[str, float]]) -> list[str]:
    if not values:
        return []
    return family(name, "gauge", help_text, [sample(name, (("source", s),), v) for s, v in sorted(values)])


def extended_families(state: ServerState, metrics: MetricsConfig) -> list[str]:
    lines: list[str] = []
    up_by_source: list[tuple[str, float]] = []
    sessions_by_source: list[tuple[str, float]] = []
    updated: list[tuple[str, float]] = []
    queue: list[tuple[str, float]] = []
    dco: list[tuple[str, float]] = []
    for reading, up in zip(state.readings, state.up_flags, strict=True):
        up_by_source.append((reading.name, 1 if up else 0))
        snapshot = reading.snapshot
        count = 0
        if up and snapshot is not None:
            count = established_count(snapshot.session_table)
        sessions_by_source.append((reading.name, count))
        if reading.last_update is not None:
            updated.append((reading.name, reading.last_update))
        if snapshot is None or snapshot.kind != "server":
            continue
        for stat, target in (("Max bcast/mcast queue length", queue), ("dco_enabled", dco)):
            value = snapshot.global_stat(stat)
            if value is not None and value.strip().isdigit():
                target.append((reading.name, int(value)))

    if metrics.per_client:
        lines += _per_session(state, metrics)
    lines += _gauge_per_source(
        "ovpn_dco_enabled", "1 when OpenVPN runs with data channel offload (GLOBAL_STATS dco_enabled)", dco
    )
    lines += _gauge_per_source(
        "ovpn_max_bcast_mcast_queue_length", "Largest broadcast/multicast queue length (GLOBAL_STATS)", queue
    )
    if metrics.per_client:
        lines += _routes(state, metrics)
    lines += _gauge_per_source(
        "ovpn_source_last_update_timestamp_seconds",
        "When OpenVPN last wrote the source: the TIME line, else the file's mtime (epoch seconds)",
        updated,
    )
    lines += _gauge_per_source(
        "ovpn_source_sessions", "Established sessions in the source (0 while it is down)", sessions_by_source
    )
    lines += _gauge_per_source("ovpn_source_up", "1 when the source was read completely and is fresh", up_by_source)
    return lines


def _per_session(state: ServerState, metrics: MetricsConfig) -> list[str]:
    names = metrics.session_labels
    # label values -> [sessions, bytes received, bytes sent, earliest connected-since or None]
    merged: dict[tuple[str, ...], list[int | None]] = {}
    for reading in state.live_readings():
        assert reading.snapshot is not None
        table = reading.snapshot.session_table
        labels = [_label_column(n, reading, table) for n in names]
        epochs, received, sent = table.connected_since_epoch, table.bytes_received, table.bytes_sent
        for row in established_rows(table.common_name, metrics):
            key = tuple(column[row] for column in labels)
            since = epochs[row]
            entry = merged.get(key)
            if entry is None:
                merged[key] = [1, received[row], sent[row], since]
                continue
            entry[0] = (entry[0] or 0) + 1
            entry[1] = (entry[1] or 0) + received[row]
            entry[2] = (entry[2] or 0) + sent[row]
            if since is not None and (entry[3] is None or since < entry[3]):
                entry[3] = since
    if not merged:
        return []
    ordered = sorted(merged.items())
    labelled = [(tuple(zip(names, key, strict=True)), values) for key, values in ordered]

    def rows(name: str, index: int) -> list[str]:
        return [sample(name, labels, v[index] or 0) for labels, v in labelled if v[index] is not None]

    lines: list[str] = []
    lines += family(
        "ovpn_client_sessions", "gauge", "Established sessions that share these labels", rows("ovpn_client_sessions", 0)
    )
    since_rows = rows("ovpn_session_connected_since_timestamp_seconds", 3)
    if since_rows:
        lines += family(
            "ovpn_session_connected_since_timestamp_seconds", "gauge",
            "When the session connected (epoch seconds; the earliest of sessions that share these labels)",
            since_rows,
        )  # fmt: skip
    lines += family(
        "ovpn_session_bytes_received_total", "counter", "Bytes received from the client, summed over sessions",
        rows("ovpn_session_bytes_received_total", 1),
    )  # fmt: skip
    lines += family(
        "ovpn_session_bytes_sent_total", "counter", "Bytes sent to the client, summed over sessions",
        rows("ovpn_session_bytes_sent_total", 2),
    )  # fmt: skip
    return lines


def _routes(state: ServerState, metrics: MetricsConfig) -> list[str]:
    # One route per virtual address within a source (OpenVPN keys its routing table by it).
    latest: dict[Labels, int] = {}
    for reading in state.live_readings():
        assert reading.snapshot is not None
        for virtual, name, _, epoch in _referenced_routes(reading.snapshot.route_table, metrics):
            labels = (("source", reading.name), ("common_name", name), ("virtual_address", virtual))
            latest[labels] = max(latest.get(labels, 0), epoch)
    if not latest:
        return []
    name = "ovpn_route_last_reference_timestamp_seconds"
    return family(
        name, "gauge", "When OpenVPN last routed a packet to this virtual address (epoch seconds)",
        [sample(name, labels, value) for labels, value in sorted(latest.items())],
    )  # fmt: skip


def _referenced_routes(table: RouteTable, metrics: MetricsConfig) -> Iterator[tuple[str, str, str, int]]:
    """(virtual address, common name, real address, last reference) of the routes with a Last Ref (time_t),
    include/exclude applied to their common names."""
    filtered = filtering(metrics)
    columns = (table.virtual_address, table.common_name, table.real_address, table.last_ref_epoch)
    for virtual, name, real, epoch in zip(*columns, strict=True):
        if epoch is not None and not (filtered and not wanted(name, metrics)):
            yield virtual, name, real, epoch


def kumina_families(state: ServerState, metrics: MetricsConfig) -> list[str]:
    """kumina/openvpn_exporter's families. Label pairs print sorted by name, as its Go client does."""
    series = _KuminaSeries()
    for reading, is_up in zip(state.readings, state.up_flags, strict=True):
        series.add(reading, is_up, metrics)
    return series.lines()


@dataclass
class _KuminaSeries:
    """kumina's series over all readings, merged where two readings share a status path."""

    up: dict[str, int] = field(default_factory=dict)
    updated: dict[str, float] = field(default_factory=dict)
    connected: dict[str, int] = field(default_factory=dict)
    received: dict[Labels, int] = field(default_factory=dict)
    sent: dict[Labels, int] = field(default_factory=dict)
    routes: dict[Labels, int] = field(default_factory=dict)
    client_counters: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, reading: Reading, is_up: bool, metrics: MetricsConfig) -> None:
        path = reading.target
        self.up[path] = max(self.up.get(path, 0), 1 if is_up else 0)
        if reading.last_update is not None:
            self.updated[path] = max(self.updated.get(path, 0.0), reading.last_update)
        snapshot = reading.snapshot
        if not is_up or snapshot is None:
            return
        if snapshot.kind == "client":
            for stat, value in snapshot.client_stats:
                if stat in KUMINA_CLIENT_COUNTERS:
                    counters = self.client_counters.setdefault(KUMINA_CLIENT_COUNTERS[stat][0], {})
                    counters[path] = counters.get(path, 0) + value
            return
        table = snapshot.session_table
        self.connected[path] = self.connected.get(path, 0) + established_count(table)
        if metrics.per_client:
            self.add_sessions(table, path, metrics)
            for virtual, name, real, epoch in _referenced_routes(snapshot.route_table, metrics):
                labels: Labels = (
                    ("common_name", name), ("real_address", real), ("status_path", path), ("virtual_address", virtual),
                )  # fmt: skip
                self.routes[labels] = max(self.routes.get(labels, 0), epoch)

    def add_sessions(self, table: SessionTable, path: str, metrics: MetricsConfig) -> None:
        """The byte counts of a table's established sessions, per kumina's connection labels."""
        names, users, real, virtual = table.common_name, table.username, table.real_address, table.virtual_address
        epochs, bytes_received, bytes_sent = table.connected_since_epoch, table.bytes_received, table.bytes_sent
        received, sent = self.received, self.sent
        for row in established_rows(names, metrics):
            since = str(epochs[row]) if epochs[row] is not None else ""
            labels: Labels = (
                ("common_name", names[row]), ("connection_time", since), ("real_address", real[row]),
                ("status_path", path), ("username", users[row]), ("virtual_address", virtual[row]),
            )  # fmt: skip
            received[labels] = received.get(labels, 0) + bytes_received[row]
            sent[labels] = sent.get(labels, 0) + bytes_sent[row]

    def lines(self) -> list[str]:
        lines: list[str] = []
        for metric, help_text in sorted(KUMINA_CLIENT_COUNTERS.values()):
            per_path = self.client_counters.get(metric)
            if per_path:
                samples = [_kumina(metric, p, v) for p, v in sorted(per_path.items())]
                lines += family(metric, "counter", help_text, samples)
        # kumina's release 0.3.0 named this family openvpn_openvpn_server_connected_clients (a doubled prefix,
        # fixed later upstream): dashboards exist for both spellings, so both are served.
        for name in ("openvpn_openvpn_server_connected_clients", "openvpn_server_connected_clients"):
            if self.connected:
                samples = [_kumina(name, p, v) for p, v in sorted(self.connected.items())]
                lines += family(name, "gauge", "Number Of Connected Clients", samples)
        for name, help_text, values in (
            ("openvpn_server_client_received_bytes_total",
             "Amount of data received over a connection on the VPN server, in bytes.", self.received),
            ("openvpn_server_client_sent_bytes_total",
             "Amount of data sent over a connection on the VPN server, in bytes.", self.sent),
        ):  # fmt: skip
            if values:
                lines += family(name, "counter", help_text, [sample(name, k, v) for k, v in sorted(values.items())])
        if self.routes:
            name = "openvpn_server_route_last_reference_time_seconds"
            lines += family(
                name, "gauge", "Time at which a route was last referenced, in seconds.",
                [sample(name, k, v) for k, v in sorted(self.routes.items())],
            )  # fmt: skip
        if self.updated:
            name = "openvpn_status_update_time_seconds"
            lines += family(
                name, "gauge", "UNIX timestamp at which the OpenVPN statistics were updated.",
                [_kumina(name, p, v) for p, v in sorted(self.updated.items())],
            )  # fmt: skip
        lines += family(
            "openvpn_up", "gauge", "Whether scraping OpenVPN's metrics was successful.",
            [_kumina("openvpn_up", p, v) for p, v in sorted(self.up.items())],
        )  # fmt: skip
        return lines


def _kumina(name: str, status_path: str, value: float) -> str:
    return sample(name, (("status_path", status_path),), value)
