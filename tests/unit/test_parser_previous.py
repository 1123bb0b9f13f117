"""parse_status(..., previous=): a rewrite that changed only the byte counters shares the other columns.

The answer must be exactly the one a parse without `previous` gives, whatever changed between the two
texts; only the sharing differs.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from exporter.model import Session
from exporter.parser import StatusParseError, parse_status
from tests.support.common import CAPTURED

FILES = ["server-udp-status-v3.log", "server-tcp-userpass-status-v3.log", "server-status-v3-during-handshake.log"]
SHARED = [name for name in Session._fields if name not in ("bytes_received", "bytes_sent")]


def client_fields(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.split("\n") if line.startswith("CLIENT_LIST\t")]


def changed(value: str, column: int, change: int) -> str:
    """A different value of the same kind: numbers stay numbers, the address keeps its form."""
    if column in (5, 6, 8, 10, 11):  # counters, time_t, Client ID, Peer ID
        return str(int(value) + change)
    if column == 2:  # "host:port"
        host, port = value.rsplit(":", 1)
        return f"{host}:{int(port) + change}"
    if column == 7:  # "YYYY-MM-DD HH:MM:SS"
        return value[:-2] + f"{(int(value[-2:]) + change) % 60:02d}"
    return value + "x"


def rewritten(text: str, change: int, column: int) -> str:
    """`text` with field `column` of every client row changed (5 and 6 are the byte counters)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("CLIENT_LIST\t"):
            fields = line.split("\t")
            fields[column] = changed(fields[column], column, change)
            lines[i] = "\t".join(fields)
    return "\n".join(lines)


@pytest.mark.parametrize("name", FILES)
def test_new_counters_share_every_other_column(name: str) -> None:
    text = (CAPTURED / name).read_text()
    assert client_fields(text), "the fixture has client rows"
    first = parse_status(text, "udp")
    built = [first.session_table.column_token(column) for column in SHARED]  # lazily built columns, built now
    later = rewritten(rewritten(text, 1000, 5), 7, 6)
    second = parse_status(later, "udp", first)
    assert second == parse_status(later, "udp")
    assert second.session_table.bytes_received == tuple(r + 1000 for r in first.session_table.bytes_received)
    assert second.session_table.bytes_sent == tuple(s + 7 for s in first.session_table.bytes_sent)
    for column, values in zip(SHARED, built, strict=True):
        assert second.session_table.column_token(column) is values, column


@pytest.mark.parametrize("column", [1, 2, 3, 4, 7, 8, 9, 10, 11, 12])
def test_any_other_change_is_parsed_afresh(column: int) -> None:
    text = (CAPTURED / "server-udp-status-v3.log").read_text()
    first = parse_status(text, "udp")
    later = rewritten(rewritten(text, 3, 5), 1, column)
    second = parse_status(later, "udp", first)
    assert second == parse_status(later, "udp")
    name = Session._fields[column - 1 if column < 3 else column + 2]  # the table adds host, port, protocol
    assert getattr(second.session_table, name) != getattr(first.session_table, name)


def test_a_client_more_or_less_is_parsed_afresh() -> None:
    text = (CAPTURED / "server-udp-status-v3.log").read_text()
    first = parse_status(text, "udp")
    lines = text.split("\n")
    rows = [i for i, line in enumerate(lines) if line.startswith("CLIENT_LIST\t")]
    fewer = "\n".join(line for i, line in enumerate(lines) if i != rows[0])
    second = parse_status(fewer, "udp", first)
    assert second == parse_status(fewer, "udp")
    assert len(second.session_table) == len(first.session_table) - 1


V1 = (CAPTURED / "server-udp-status-v1.log").read_text()


def v1_rewritten(text: str, change: int) -> str:
    """status-version 1 `text` with every client row's byte counters grown by `change`."""
    lines = text.split("\n")
    header = lines.index("Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since")
    end = lines.index("ROUTING TABLE")
    for i in range(header + 1, end):
        fields = lines[i].split(",")
        fields[2], fields[3] = str(int(fields[2]) + change), str(int(fields[3]) + change)
        lines[i] = ",".join(fields)
    return "\n".join(lines)


def test_v1_new_counters_share_the_other_columns_but_not_the_route_join() -> None:
    first = parse_status(V1, "udp")
    built = {column: first.session_table.column_token(column) for column in SHARED}
    later = v1_rewritten(V1, 500)
    second = parse_status(later, "udp", first)
    assert second == parse_status(later, "udp")
    assert second.session_table.bytes_received == tuple(r + 500 for r in first.session_table.bytes_received)
    for column in ("common_name", "real_address", "remote_port", "connected_since"):
        assert second.session_table.column_token(column) is built[column], column
    # The virtual addresses come from this parse's routing table: a route that moved moves them too.
    first_v4 = first.session_table.virtual_address[0]
    moved = later.replace(f"\n{first_v4},", "\n10.81.0.99,", 1)
    third = parse_status(moved, "udp", second)
    assert third == parse_status(moved, "udp")
    assert third.session_table.virtual_address[0] == "10.81.0.99"


def test_v1_torn_client_row_is_reported_as_the_line_by_line_parse_does() -> None:
    lines = V1.split("\n")
    lines[4] = lines[4][lines[4].index(",", 20) + 1 :]  # the tail of a row: what a torn read leaves
    with pytest.raises(StatusParseError, match="client row has 3 columns, header has 5"):
        parse_status("\n".join(lines), "udp")


def widened(text: str, copies: int) -> str:
    """`text` with every client row (and its routes) repeated `copies` times as distinct connections."""
    sep = "\t" if text.startswith("TITLE") else ","
    out = []
    for line in text.split("\n"):
        fields = line.split(sep)
        v3_client = fields[0] == "CLIENT_LIST"
        v1_client = sep == "," and len(fields) == 5 and fields[1].startswith("127.0.0.1:")
        v3_route = fields[0] == "ROUTING_TABLE"
        v1_route = sep == "," and len(fields) == 4 and fields[2].startswith("127.0.0.1:")
        if not (v3_client or v1_client or v3_route or v1_route):
            out.append(line)
            continue
        cn, real = (1, 2) if v3_client else (0, 1) if v1_client else (2, 3) if v3_route else (1, 2)
        for i in range(copies):
            copy = list(fields)
            copy[cn] = f"{fields[cn]}-{i}"
            copy[real] = f"{fields[real]}{i:04d}"
            if v3_client:
                copy[10] = copy[11] = str(int(fields[10]) * copies + i)
            if v3_route or v1_route:
                copy[1 if v3_route else 0] = f"{fields[1 if v3_route else 0]}{i:04d}"
            out.append(sep.join(copy))
    return "\n".join(out)


@pytest.mark.parametrize("name", ["server-udp-status-v1.log", "server-udp-status-v3.log"])
def test_a_snapshot_does_not_keep_the_earlier_ones_alive(name: str) -> None:
    """Each parse hands the previous snapshot to the next: nothing may chain them, or memory grows with
    every rewrite. Half the rewrites change only counters, half rename a client, and only /metrics's
    columns are built, so that unbuilt columns keep whatever their builders refer to."""
    text = widened((CAPTURED / name).read_text(), 300)
    first_name = "client1-0"
    assert text.count(first_name) >= 2
    previous = None
    sizes = []
    tracemalloc.start()
    try:
        for i in range(24):
            variant = text.replace(first_name, f"renamed{i // 2}-0") if i % 2 else text
            snapshot = parse_status(variant.replace("7446", str(7446 + i)), "udp", previous)
            assert snapshot.session_table.common_name  # the column /metrics reads
            previous = snapshot
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert len(previous.session_table) == 3 * 300
    assert sizes[-1] < 1.3 * sizes[5], sizes
