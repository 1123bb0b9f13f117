"""Connection churn: what changed between two consecutive complete snapshots of one source.

A session is identified by OpenVPN's Client ID together with its Connected Since time where the format has
a Client ID (status-version 2 and 3, the management interface): a restarted OpenVPN hands out Client IDs
from 0 again, and the start time tells those apart. Status-version 1 has no Client ID: there it is the
common name, the real address (with its port) and the Connected Since time. Rows still in the TLS handshake
(CN `UNDEF`) are not sessions yet: a session starts when it first shows established.

The first snapshot of a source is the baseline: counters start at 0, with no burst for the sessions that
were already there. Sources keep their last complete snapshot across torn and failed reads, and a stale
file is not rewritten: either way the snapshot is the same object and nothing is diffed twice. A source
that comes back diffs its new snapshot against the last good one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import add

from exporter.model import HANDSHAKE_CN, SessionTable
from exporter.sources.base import Reading

log = logging.getLogger("openvpn_exporter")

# From a minute to a week: a reconnect storm lands in the first buckets, a working day around 28800.
DURATION_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0, 604800.0)
# Client labels remembered for reconnect counting (metrics.client_reconnects), over every source. Beyond
# this, new clients are not counted per client (the per-source counters still are): a bound on memory
# and on the series a scrape carries.
MAX_TRACKED_CLIENTS = 10_000
_KEY_SEP = "\x00"  # cannot occur in a status file's fields


@dataclass(frozen=True, slots=True)
class Baseline:
    """The sessions of the last diffed snapshot of one source: identity -> row, and the tokens of the
    columns behind it (SessionTable.column_token).

    `table` is kept by reference only: while OpenVPN rewrites only the counters, the parser shares the
    identity columns with the previous snapshot, so a new snapshot with the same `columns` tokens is known
    to hold the same sessions without building a key.
    """

    table: SessionTable
    columns: tuple[object, ...]
    rows: dict[str, int]


@dataclass(frozen=True, slots=True)
class Change:
    """Sessions that started and ended between two snapshots: their row indexes in the new and old table."""

    started: tuple[int, ...]
    ended: tuple[int, ...]


def _identity_names(table: SessionTable) -> tuple[str, ...]:
    ids: Sequence[str] = table.client_id
    if len(ids) and "" not in ids:
        return ("client_id", "connected_since")
    return ("common_name", "real_address", "connected_since")


def _tokens(table: SessionTable, names: tuple[str, ...]) -> tuple[object, ...]:
    """What the identity columns and the names are built from (SessionTable.column_token): the same
    objects in a snapshot whose parse shared them with the previous one."""
    return tuple(table.column_token(name) for name in (*names, "common_name"))


def baseline_of(table: SessionTable) -> Baseline:
    """Index a table's established sessions by identity, with C-level loops (map, zip, dict)."""
    names = _identity_names(table)
    columns: list[Sequence[str]] = [getattr(table, name) for name in names]
    keys: Iterable[str] = columns[0]
    for column in columns[1:]:
        keys = map(add, map(add, keys, _repeat_sep(len(table))), column)
    rows = dict(zip(keys, range(len(table)), strict=False))
    common_names: Sequence[str] = table.common_name
    if HANDSHAKE_CN in common_names:
        rows = {key: row for key, row in rows.items() if common_names[row] != HANDSHAKE_CN}
    return Baseline(table, _tokens(table, names), rows)


def _repeat_sep(count: int) -> Sequence[str]:
    return [_KEY_SEP] * count


def diff(previous: Baseline, table: SessionTable) -> tuple[Baseline, Change]:
    """The new baseline and what changed. Same identity columns (shared by the parser): nothing did."""
    tokens = _tokens(table, _identity_names(table))
    if len(tokens) == len(previous.columns) and all(a is b for a, b in zip(tokens, previous.columns, strict=True)):
        return Baseline(table, previous.columns, previous.rows), Change((), ())
    current = baseline_of(table)
    started = tuple(sorted(current.rows[key] for key in current.rows.keys() - previous.rows.keys()))
    ended = tuple(sorted(previous.rows[key] for key in previous.rows.keys() - current.rows.keys()))
    return current, Change(started, ended)


def since_epoch(table: SessionTable, row: int) -> float | None:
    """When a session started: the time_t column, else the Connected Since text in local time, as OpenVPN
    printed it (status-version 1)."""
    epoch = table.connected_since_epoch[row]
    if epoch is not None:
        return float(epoch)
    text = table.connected_since[row]
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return None


def client_label(table: SessionTable, row: int) -> str:
    return f"{table.common_name[row]}_{table.protocol[row] or 'udp'}"


@dataclass
class SourceCounts:
    """Cumulative churn of one source since start-up."""

    starts: int = 0
    ends: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    durations: int = 0  # ended sessions whose duration is known (the histogram's count)
    duration_sum: float = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
        self.durations += 1
        self.duration_sum += seconds


@dataclass
class ClientReconnects:
    """Per client label: sessions started again by a client already seen (opt-in, bounded)."""

    seen: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    full_logged: bool = False

    def remember(self, label: str) -> bool:
        """Whether the label was seen before; remembers it while there is room."""
        if label in self.seen:
            return True
        if len(self.seen) < MAX_TRACKED_CLIENTS:
            self.seen.add(label)
        elif not self.full_logged:
            self.full_logged = True
            log.warning("reconnect counts: %d clients tracked, newer ones are not counted per client", len(self.seen))
        return False


class ChurnTracker:
    """Diffs each source's snapshots as they change and keeps the cumulative counts. Thread-safe: two
    scrapes may observe at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._baselines: dict[tuple[str, str], Baseline] = {}
        self.counts: dict[str, SourceCounts] = {}
        self.clients = ClientReconnects()

    def observe(self, readings: Sequence[Reading], now: float, reconnects: bool = False) -> None:
        """Diff every source whose snapshot changed. `reconnects` also counts them per client label."""
        with self._lock:
            names = set()
            for reading in readings:
                snapshot = reading.snapshot
                if snapshot is not None and snapshot.kind != "server":
                    continue  # a client-mode status file has no sessions to come and go
                names.add(reading.name)
                self.counts.setdefault(reading.name, SourceCounts())
                if snapshot is None:
                    continue
                # By target too: a reload that points a source name at another file starts a new baseline.
                where = (reading.name, reading.target)
                table = snapshot.session_table
                previous = self._baselines.get(where)
                if previous is None:
                    self._baselines[where] = baseline = baseline_of(table)
                    if reconnects:
                        for row in baseline.rows.values():
                            self.clients.remember(client_label(table, row))
                    continue
                if previous.table is table:
                    continue
                baseline, change = diff(previous, table)
                self._baselines[where] = baseline
                ended_at = reading.last_update if reading.last_update is not None else now
                self._count(self.counts[reading.name], previous.table, table, change, ended_at, reconnects)
            # A glob match that went away, or a source a reload removed or re-pointed: forget it.
            current = {(r.name, r.target) for r in readings}
            for gone in [n for n in self.counts if n not in names]:
                self.counts.pop(gone)
            for stale in [w for w in self._baselines if w not in current]:
                self._baselines.pop(stale)

    def _count(
        self,
        counts: SourceCounts,
        old: SessionTable,
        new: SessionTable,
        change: Change,
        ended_at: float,
        per_client: bool,
    ) -> None:
        counts.starts += len(change.started)
        counts.ends += len(change.ended)
        for row in change.ended:
            started_at = since_epoch(old, row)
            if started_at is not None:
                counts.observe(max(0.0, ended_at - started_at))
        if per_client:
            for row in change.started:
                label = client_label(new, row)
                if self.clients.remember(label):
                    self.clients.counts[label] = self.clients.counts.get(label, 0) + 1

    def snapshot(self) -> tuple[dict[str, SourceCounts], dict[str, int]]:
        """Copies of the counts, for a collector to render outside the lock."""
        with self._lock:
            sources = {
                name: SourceCounts(c.starts, c.ends, list(c.buckets), c.durations, c.duration_sum)
                for name, c in self.counts.items()
            }
            return sources, dict(self.clients.counts)
