"""`/metrics`: the OpenVPN metrics of the original exporter, byte-compatible with its output.

Families come sorted by name and samples by label value, as the Go client library prints them.
Sessions that share a `client` label (duplicate-cn, one CN on several instances of one protocol) are
summed into one series: the contract forbids two samples with one label set, and a sum is what
"bytes this client moved" means. Rows still in the TLS handshake (CN `UNDEF`) are not sessions yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fnmatch import fnmatchcase
from itertools import chain, compress, repeat
from operator import add, itemgetter
from typing import TypeVar

from exporter.config import MetricsConfig
from exporter.hub import UNKNOWN_VERSION, ServerState
from exporter.model import HANDSHAKE_CN, SessionTable
from exporter.views.exposition import escape_label, family, sample

_first = itemgetter(0)
_second = itemgetter(1)
_T = TypeVar("_T")


def wanted(common_name: str, metrics: MetricsConfig) -> bool:
    if metrics.include and not any(fnmatchcase(common_name, p) for p in metrics.include):
        return False
    return not any(fnmatchcase(common_name, p) for p in metrics.exclude)


def live_tables(state: ServerState) -> list[SessionTable]:
    """The session tables of the live readings, in reading order."""
    return [r.snapshot.session_table for r in state.live_readings() if r.snapshot is not None]


def live_column(tables: list[SessionTable], name: str) -> Sequence[_T]:
    """One column over several tables: the table's own tuple when there is one table, no copy."""
    if len(tables) == 1:
        column: Sequence[_T] = getattr(tables[0], name)
        return column
    return list(chain.from_iterable(getattr(t, name) for t in tables))


def per_client_totals(state: ServerState, metrics: MetricsConfig) -> dict[str, list[int]]:
    """Byte totals by `client` label, read from the columns: no row objects."""
    totals: dict[str, list[int]] = {}
    filtering = bool(metrics.include or metrics.exclude)
    verdicts: dict[str, bool] = {}  # include/exclude per distinct CN (duplicate-cn repeats names)
    for table in live_tables(state):
        for name, protocol, received, sent in zip(
            table.common_name, table.protocol, table.bytes_received, table.bytes_sent, strict=True
        ):
            if name == HANDSHAKE_CN:
                continue
            if filtering:
                keep = verdicts.get(name)
                if keep is None:
                    keep = verdicts[name] = wanted(name, metrics)
                if not keep:
                    continue
            label = f"{name}_{protocol or 'udp'}"
            entry = totals.get(label)
            if entry is None:
                totals[label] = [received, sent]
            else:
                entry[0] += received
                entry[1] += sent
    return totals


def session_count(state: ServerState) -> int:
    return sum(len(t) - t.common_name.count(HANDSHAKE_CN) for t in live_tables(state))


def _summed_duplicates(keys: list[str], received: Sequence[int], sent: Sequence[int]) -> dict[str, tuple[int, int]]:
    """Byte totals of the labels that several sessions share; only those rows are visited one by one."""
    shared = {key for key, count in Counter(keys).items() if count > 1}
    sums: dict[str, tuple[int, int]] = {}
    for key, rx, tx in compress(zip(keys, received, sent, strict=True), map(shared.__contains__, keys)):
        total = sums.get(key)
        sums[key] = (rx, tx) if total is None else (total[0] + rx, total[1] + tx)
    return sums


def _client_samples(state: ServerState, metrics: MetricsConfig) -> tuple[list[str], list[int], list[int]]:
    """Sorted `client` labels (escaped) with their byte totals.

    Without include/exclude filters the work is done column by column with C-level loops (map, zip,
    sorted, %-formatting) and only rows whose label repeats are summed one by one; with filters,
    per_client_totals() does it row by row (still over the columns).
    """
    if metrics.include or metrics.exclude:
        totals = per_client_totals(state, metrics)
        labels = sorted(totals)
        received = [totals[label][0] for label in labels]
        sent = [totals[label][1] for label in labels]
    else:
        tables = live_tables(state)
        names: Sequence[str] = live_column(tables, "common_name")
        protocols: Sequence[str] = live_column(tables, "protocol")
        received_column: Sequence[int] = live_column(tables, "bytes_received")
        sent_column: Sequence[int] = live_column(tables, "bytes_sent")
        if HANDSHAKE_CN in names:
            keep = list(map(HANDSHAKE_CN.__ne__, names))
            names = list(compress(names, keep))
            protocols = list(compress(protocols, keep))
            received_column = list(compress(received_column, keep))
            sent_column = list(compress(sent_column, keep))
        if "" in protocols:
            protocols = [p or "udp" for p in protocols]
        distinct = set(protocols)
        if len(distinct) == 1:  # one protocol (one source, the usual case): a concatenation, no tuples
            keys = list(map(add, names, repeat("_" + distinct.pop(), len(names))))
        else:
            keys = list(map("%s_%s".__mod__, zip(names, protocols, strict=True)))
        if len(set(keys)) == len(keys):  # every label once: sort row indexes, no pairs and no dict
            order = sorted(range(len(keys)), key=keys.__getitem__)
            labels = list(map(keys.__getitem__, order))
            received = list(map(received_column.__getitem__, order))
            sent = list(map(sent_column.__getitem__, order))
        else:  # sessions share a label: sum them
            pairs = dict(zip(keys, zip(received_column, sent_column, strict=True), strict=True))
            pairs.update(_summed_duplicates(keys, received_column, sent_column))
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
