"""What every view reads from a state: the live session tables, their columns, the name filter and the
protocol label.

The views read the snapshot column by column (see exporter.model): one tuple per field instead of one row
object per session. A column over several sources is the concatenation in reading order.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from itertools import chain
from typing import TypeVar

from exporter.config import MetricsConfig
from exporter.model import HANDSHAKE_CN, CounterName, SessionTable
from exporter.state import ServerState

_T = TypeVar("_T")

# A session whose source named no protocol (the sources default to "udp", but a snapshot parsed without
# one has "") is labelled as OpenVPN's own default.
DEFAULT_PROTOCOL = "udp"


def wanted(common_name: str, metrics: MetricsConfig) -> bool:
    """metrics.include / metrics.exclude: the globs every per-client family applies to a common name."""
    if metrics.include and not any(fnmatchcase(common_name, p) for p in metrics.include):
        return False
    return not any(fnmatchcase(common_name, p) for p in metrics.exclude)


def filtering(metrics: MetricsConfig) -> bool:
    return bool(metrics.include or metrics.exclude)


def established_rows(names: Sequence[str], metrics: MetricsConfig) -> list[int]:
    """The rows that per-client series show: not in the TLS handshake (CN UNDEF), include/exclude applied."""
    filtered = filtering(metrics)
    verdicts: dict[str, bool] = {}  # include/exclude per distinct CN (duplicate-cn repeats names)
    rows = []
    for row, name in enumerate(names):
        if name == HANDSHAKE_CN:
            continue
        if filtered:
            keep = verdicts.get(name)
            if keep is None:
                keep = verdicts[name] = wanted(name, metrics)
            if not keep:
                continue
        rows.append(row)
    return rows


def established_count(table: SessionTable) -> int:
    """Sessions past the TLS handshake: the ones the session counts count."""
    return len(table) - table.count_of("common_name", HANDSHAKE_CN)


def protocol_label(protocol: str) -> str:
    return protocol or DEFAULT_PROTOCOL


def protocol_labels(protocols: Sequence[str]) -> Sequence[str]:
    """protocol_label over a column: the column itself, no copy, when every value has a protocol."""
    return [protocol or DEFAULT_PROTOCOL for protocol in protocols] if "" in protocols else protocols


def live_tables(state: ServerState) -> list[SessionTable]:
    """The session tables of the live readings, in reading order."""
    return [r.snapshot.session_table for r in state.live_readings() if r.snapshot is not None]


def live_column(tables: list[SessionTable], name: str) -> Sequence[_T]:
    """One column over several tables: the table's own tuple when there is one table, no copy."""
    if len(tables) == 1:
        column: Sequence[_T] = getattr(tables[0], name)
        return column
    return list(chain.from_iterable(getattr(t, name) for t in tables))


def counter_text(tables: list[SessionTable], name: CounterName) -> Sequence[str]:
    """One counter column over several tables, as decimal text."""
    if len(tables) == 1:
        return tables[0].counter_text(name)
    return list(chain.from_iterable(t.counter_text(name) for t in tables))
