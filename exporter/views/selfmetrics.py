"""The exporter's own metrics for `/prom`, as a prometheus_client Collector over the latest state."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.state import ServerState


class ExporterCollector(Collector):
    def __init__(self, latest: Callable[[], ServerState | None], version: str) -> None:
        self._latest = latest
        self._version = version

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "openvpn_exporter_build_info", "Build information of openvpn-exporter", labels=["version"]
        )
        build.add_metric([self._version], 1)
        yield build
        state = self._latest()
        if state is None:
            return
        up = GaugeMetricFamily(
            "openvpn_exporter_source_up",
            "1 when the source was read completely, is reachable and is fresh",
            labels=["source"],
        )
        updated = GaugeMetricFamily(
            "openvpn_exporter_source_last_update_timestamp_seconds",
            "When OpenVPN last wrote the source (the TIME line, else the file's mtime)",
            labels=["source"],
        )
        age = GaugeMetricFamily(
            "openvpn_exporter_source_age_seconds",
            "Seconds since OpenVPN last wrote the source, at the last refresh",
            labels=["source"],
        )
        sessions = GaugeMetricFamily(
            "openvpn_exporter_source_sessions",
            "Sessions in the source's last complete read",
            labels=["source"],
        )
        skipped = GaugeMetricFamily(
            "openvpn_exporter_source_skipped_lines",
            "Lines of the last complete read that were passed over (unknown types, ambiguous rows)",
            labels=["source"],
        )
        errors = CounterMetricFamily(
            "openvpn_exporter_read_errors",
            "Reads of a source that failed, by reason (torn, missing, permission, malformed, ...)",
            labels=["source", "reason"],
        )
        for reading, is_up in zip(state.readings, state.up_flags, strict=True):
            up.add_metric([reading.name], 1 if is_up else 0)
            if reading.last_update is not None:
                updated.add_metric([reading.name], reading.last_update)
                age.add_metric([reading.name], max(0.0, state.taken_at - reading.last_update))
            if reading.snapshot is not None:
                sessions.add_metric([reading.name], len(reading.snapshot.session_table))
                skipped.add_metric([reading.name], reading.snapshot.skipped_lines)
            for reason, count in reading.read_errors:
                errors.add_metric([reading.name, reason], count)
        yield from (up, updated, age, sessions, skipped, errors)
