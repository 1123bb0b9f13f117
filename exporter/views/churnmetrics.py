"""Connection churn on `/prom`: session starts and ends, session durations, opt-in reconnects per client.

Served on `/prom` (the endpoint the chart scrapes), not `/metrics`: the default `/metrics` output stays the
original exporter's five families. Each collection first diffs the sources whose snapshot changed since the
last one, so the counts follow the snapshots `/prom` itself reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.churn import DURATION_BUCKETS, ChurnTracker
from exporter.config import MetricsConfig
from exporter.sources.base import Reading
from exporter.views.columns import wanted

# The readings of the latest refresh and the time it was taken, or None before the first.
LatestReadings = Callable[[], tuple[Sequence[Reading], float] | None]


class ChurnCollector(Collector):
    def __init__(self, tracker: ChurnTracker, latest: LatestReadings, metrics: Callable[[], MetricsConfig]) -> None:
        self._tracker = tracker
        self._latest = latest
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics()
        per_client = metrics.client_reconnects and metrics.per_client
        latest = self._latest()
        if latest is not None:
            readings, taken_at = latest
            self._tracker.observe(readings, taken_at, reconnects=per_client)
        sources, clients = self._tracker.snapshot()
        starts = CounterMetricFamily(
            "ovpn_session_starts", "Sessions that started since the exporter started, by source", labels=["source"]
        )
        ends = CounterMetricFamily(
            "ovpn_session_ends", "Sessions that ended since the exporter started, by source", labels=["source"]
        )
        durations = HistogramMetricFamily(
            "ovpn_session_duration_seconds",
            "How long sessions lasted, observed when they end (connected-since to the status update without them)",
            labels=["source"],
        )
        for name in sorted(sources):
            counts = sources[name]
            starts.add_metric([name], counts.starts)
            ends.add_metric([name], counts.ends)
            buckets = [(repr(bound), count) for bound, count in zip(DURATION_BUCKETS, counts.buckets, strict=True)]
            buckets.append(("+Inf", counts.durations))
            durations.add_metric([name], buckets, counts.duration_sum)
        yield from (starts, ends, durations)
        if per_client:
            reconnects = CounterMetricFamily(
                "ovpn_client_reconnects",
                "Sessions started again by a client (<common name>_<protocol>) seen before, since the exporter started",
                labels=["client"],
            )
            for label in sorted(clients):
                if wanted(label.rpartition("_")[0], metrics):
                    reconnects.add_metric([label], clients[label])
            yield reconnects
