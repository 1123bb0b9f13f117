"""`/metrics`: the OpenVPN metrics of the original exporter, byte-compatible with its output.

Families come sorted by name and samples by label value, as the Go client library prints them.
Sessions that share a `client` label (duplicate-cn, one CN on several instances of one protocol) are
summed into one series: the contract forbids two samples with one label set, and a sum is what
"bytes this client moved" means. Rows still in the TLS handshake (CN `UNDEF`) are not sessions yet.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import compress, islice, repeat
from operator import add, eq, is_, itemgetter

from exporter.config import MetricsConfig
from exporter.model import HANDSHAKE_CN
from exporter.state import UNKNOWN_VERSION, ServerState
from exporter.views.columns import (
    counter_text,
    established_count,
    established_rows,
    filtering,
    live_column,
    live_tables,
    protocol_labels,
)
from exporter.views.exposition import escape_label, family, sample

_HEAD_END = '"} '


def per_client_totals(state: ServerState, metrics: MetricsConfig) -> dict[str, list[int]]:
    """Byte totals by `client` label, read from the columns: no row objects."""
    totals: dict[str, list[int]] = {}
    for table in live_tables(state):
        names, protocols = table.common_name, protocol_labels(table.protocol)
        received, sent = table.bytes_received, table.bytes_sent
        for row in established_rows(names, metrics):
            label = f"{names[row]}_{protocols[row]}"
            entry = totals.get(label)
            if entry is None:
                totals[label] = [received[row], sent[row]]
            else:
                entry[0] += received[row]
                entry[1] += sent[row]
    return totals


def info_pairs(state: ServerState) -> list[tuple[str, str]]:
    """`ovpn_info`'s (product, version) pairs: live server sources only, since a stale or deleted file keeps
    the version of a server that may be gone or upgraded. `unknown` (status-version 1 carries no version)
    only when no live source knows its version, so it never stands beside a real one."""
    live = [r.snapshot for r in state.live_readings() if r.snapshot is not None and r.snapshot.kind == "server"]
    known = {(s.product, s.version) for s in live if s.version}
    return sorted(known or {(s.product, UNKNOWN_VERSION) for s in live})


def session_count(state: ServerState) -> int:
    return sum(map(established_count, live_tables(state)))


@dataclass(frozen=True, slots=True)
class ClientLayout:
    """Where each session's bytes go in the sorted `client` series, worked out from names and protocols.

    Between two rewrites of a status file usually only the byte counters change: the same names and
    protocols give the same layout, so the sort, the label building and the duplicate search are done
    once per set of clients instead of once per scrape.
    """

    tokens: tuple[object, ...]  # the tables' name and protocol column tokens (SessionTable.column_token)
    names: str  # the names joined by newlines (no name holds one: each is a piece of one line)
    protocols: Sequence[str]
    # The rows in label order, handshake rows left out: machine integers (4 bytes a row, not the 36 of an
    # int object in a tuple), turned into an itemgetter once per render.
    order: array[int]
    # Per series, its escaped label and what follows it up to the value (`label"} `), joined by newlines
    # (an escaped label holds none): one string kept instead of one per client, split at each render.
    heads: str
    merges: list[tuple[int, int]]  # (into, from) positions in label order: sessions that share a label
    keep: bytearray | None  # per position in label order, 0 where it was merged into the one before

    def matches(self, names: Sequence[str], protocols: Sequence[str]) -> bool:
        return len(self.protocols) == len(names) and self.names == "\n".join(names) and _same(self.protocols, protocols)

    def values(self, *columns: Sequence[str]) -> list[Sequence[str]]:
        """Counter columns (decimal text) in label order, summed where sessions share a label."""
        pick = _picker(self.order)
        found: list[Sequence[str]] = []
        for counts in columns:
            values = pick(counts)
            if self.merges:
                for into, from_ in self.merges:
                    values[into] = str(int(values[into]) + int(values[from_]))
                if self.keep is not None:
                    values = list(compress(values, self.keep))
            found.append(values)
        return found


def _same(a: Sequence[str], b: Sequence[str]) -> bool:
    if a is b:
        return True
    if type(a) is type(b):
        return a == b
    return len(a) == len(b) and all(map(eq, a, b))


def client_layout(names: Sequence[str], protocols: Sequence[str], tokens: tuple[object, ...] = ()) -> ClientLayout:
    """Sort the sessions by label and find the ones that share one, with C-level loops (map, sorted,
    compress); only sessions that share a label are visited one by one."""
    count = len(names)
    labelled = protocol_labels(protocols)
    distinct = set(labelled)
    if len(distinct) == 1:  # one protocol (one source, the usual case): a concatenation, no tuples
        keys = list(map(add, names, repeat("_" + distinct.pop(), count)))
    else:
        keys = list(map("%s_%s".__mod__, zip(names, labelled, strict=True)))
    candidates: Iterable[int] = range(count)
    if HANDSHAKE_CN in names:
        candidates = compress(range(count), map(HANDSHAKE_CN.__ne__, names))
    rows = sorted(candidates, key=keys.__getitem__)
    ordered = _picker(rows)(keys)
    del keys
    merges: list[tuple[int, int]] = []
    keep: bytearray | None = None
    repeats = list(map(eq, islice(ordered, 1, None), ordered))  # repeats[i]: position i + 1 repeats i
    if True in repeats:
        keep = bytearray(b"\x01") * len(ordered)
        head = previous = -1
        for position in compress(range(1, len(ordered)), repeats):
            if position != previous + 1:
                head = position - 1
            merges.append((head, position))
            keep[position] = 0
            previous = position
        ordered = list(compress(ordered, keep))
    joined = "".join(ordered)
    if "\\" in joined or '"' in joined or "\n" in joined:
        ordered = list(map(escape_label, ordered))
    heads = (_HEAD_END + "\n").join(ordered) + _HEAD_END if ordered else ""
    order = array("i", rows)
    del rows
    return ClientLayout(tokens, "\n".join(names), protocols, order, heads, merges, keep)


def _picker(rows: Sequence[int]) -> Callable[[Sequence[str]], list[str]]:
    """The values at `rows`, in that order. itemgetter picks them all in one C call, several times faster
    than a map over a bound __getitem__ (a Python-level call per row)."""
    if len(rows) > 1:
        pick = itemgetter(*rows)
        return lambda column: list(pick(column))
    return lambda column: [column[i] for i in rows]


class MetricsView:
    """Renders /metrics for one configuration, keeping the client layout of the last state it rendered."""

    def __init__(self, metrics: MetricsConfig) -> None:
        self.metrics = metrics
        self._layout: ClientLayout | None = None

    def client_samples(self, state: ServerState) -> tuple[list[str], Sequence[str], Sequence[str]]:
        """The series' heads (escaped `client` labels, sorted, each followed by `"} `) with their byte
        totals as decimal text."""
        metrics = self.metrics
        if filtering(metrics):  # filtered: row by row (still over the columns)
            totals = per_client_totals(state, metrics)
            ordered = sorted(totals)
            heads = [escape_label(label) + _HEAD_END for label in ordered]
            return heads, [str(totals[label][0]) for label in ordered], [str(totals[label][1]) for label in ordered]
        tables = live_tables(state)
        # Columns the parser shared with the last rendered state: the same clients, known without reading
        # the names (which the snapshot does not keep, see model.Rebuilt).
        tokens = tuple(t.column_token(name) for t in tables for name in ("common_name", "protocol"))
        layout = self._layout
        if layout is None or len(layout.tokens) != len(tokens) or not all(map(is_, layout.tokens, tokens)):
            names: Sequence[str] = live_column(tables, "common_name")
            protocols: Sequence[str] = live_column(tables, "protocol")
            if layout is None or not layout.matches(names, protocols):
                layout = self._layout = None  # the old layout is garbage before the new one is built
                layout = client_layout(names, protocols, tokens)
            else:
                layout = replace(layout, tokens=tokens)
            self._layout = layout
        received, sent = layout.values(counter_text(tables, "bytes_received"), counter_text(tables, "bytes_sent"))
        heads = layout.heads.split("\n") if layout.heads else []
        return heads, received, sent

    def render(self, state: ServerState) -> str:
        metrics = self.metrics
        lines: list[str] = []
        if metrics.per_client:
            heads, received, sent = self.client_samples(state)
            if heads:
                lines += family(
                    "ovpn_bytes_in_total", "counter", "Total number of bytes received",
                    [_series("ovpn_bytes_in_total", heads, received)],
                )  # fmt: skip
                lines += family(
                    "ovpn_bytes_out_total", "counter", "Total number of bytes sent",
                    [_series("ovpn_bytes_out_total", heads, sent)],
                )  # fmt: skip
        infos = info_pairs(state)
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


def _series(name: str, heads: list[str], values: Sequence[str]) -> str:
    """`name{client="label"} value` lines: one join over [head, value, newline and name, ...], which
    copies each piece once, instead of a formatted string per sample. The heads (label and `"} `) come
    from the layout, the same for both families."""
    prefix = name + '{client="'
    pieces = ["\n" + prefix] * (3 * len(heads) - 1)
    pieces[0::3] = heads
    pieces[1::3] = values
    return prefix + "".join(pieces)


def render_metrics(state: ServerState, metrics: MetricsConfig) -> str:
    return MetricsView(metrics).render(state)
