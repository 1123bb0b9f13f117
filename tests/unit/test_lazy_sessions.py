"""Session columns built on first use must read exactly like the ones the reference parser builds."""

from __future__ import annotations

import threading

import pytest

from exporter.model import LazySessionTable, SessionTable
from exporter.parser import StatusParseError, parse_reference, parse_status

HEADER = (
    "HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,Bytes Received,"
    "Bytes Sent,Connected Since,Connected Since (time_t),Username,Client ID,Peer ID,Data Channel Cipher"
)
ROUTES = "HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref,Last Ref (time_t)"


def status(rows: list[str]) -> str:
    return "\n".join(
        [
            "TITLE,OpenVPN 2.6.14 x86_64-pc-linux-gnu",
            "TIME,2026-11-27 08:00:00,1795766400",
            HEADER,
            *rows,
            ROUTES,
            "GLOBAL_STATS,Max bcast/mcast queue length,0",
            "END",
            "",
        ]
    )


def row(cn: str, real: str, cid: int, since: str = "2026-11-27 07:00:00", user: str = "UNDEF") -> str:
    return (
        f"CLIENT_LIST,{cn},{real},10.8.0.{cid + 2},,{100 + cid},{200 + cid},{since},1795762800,"
        f"{user},{cid},{cid},AES-256-GCM"
    )


def line_by_line(text: str, protocol: str) -> SessionTable:
    return parse_reference(text, protocol).session_table


@pytest.mark.parametrize(
    "rows",
    [
        [row("alice", "198.51.100.7:50001", 1), row("bob", "[2001:db8::1]:1194", 2, user="bob")],
        [row("alice", "udp4:198.51.100.7:50001", 1), row("bob", "tcp6-server:[2001:db8::1]:1194", 2)],
        [row("UNDEF", "203.0.113.9:4000", 3, since="Fri Nov 27 07:00:00 2026"), row("c", "udpish:1", 4)],
    ],
)
@pytest.mark.parametrize("protocol", ["udp", "tcp", ""])
def test_lazy_columns_equal_the_built_ones(rows: list[str], protocol: str) -> None:
    text = status(rows)
    table = parse_status(text, protocol).session_table
    assert isinstance(table, LazySessionTable)
    reference = line_by_line(text, protocol)
    assert not isinstance(reference, LazySessionTable)
    assert table.columns() == reference.columns()
    assert table == reference and hash(table) == hash(reference)
    assert len(table) == len(rows)


def test_protocol_column_without_prefixes_is_the_default() -> None:
    table = parse_status(status([row("a", "192.0.2.1:1", 1), row("b", "192.0.2.2:2", 2)]), "tcp").session_table
    assert table.protocol == ("tcp", "tcp")
    assert table.remote_host == ("192.0.2.1", "192.0.2.2")
    assert table.remote_port == ("1", "2")


def test_concurrent_first_reads_agree() -> None:
    rows = [row(f"client{i}", f"192.0.2.{i % 250}:{1000 + i}", i) for i in range(2000)]
    table = parse_status(status(rows), "udp").session_table
    seen: list[tuple[object, ...]] = []

    def read() -> None:
        seen.append((table.remote_host, table.remote_port, table.connected_since_epoch, table.username))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert all(s == seen[0] for s in seen)
    # Numbers and few-valued strings are built once and shared; hosts and ports are split at every read.
    assert all(s[2] is seen[0][2] and s[3] is seen[0][3] for s in seen)


def test_per_session_strings_are_not_kept_between_reads() -> None:
    """A snapshot keeps its columns of per-session strings as text: each read builds them again, equal,
    and the table's token for them stays the same object (what the views compare, at no cost)."""
    rows = [row(f"client{i}", f"192.0.2.{i % 250}:{1000 + i}", i) for i in range(20)]
    table = parse_status(status(rows), "udp").session_table
    for name in ("common_name", "real_address", "remote_host", "remote_port", "virtual_address", "client_id"):
        first, second = getattr(table, name), getattr(table, name)
        assert first == second and first is not second, name
        assert table.column_token(name) is table.column_token(name), name
    assert table.username is table.username and table.protocol is table.protocol
    assert table.count_of("common_name", "client3") == 1


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (row("a", "192.0.2.1:1", 1).replace(",101,", ",1x1,"), "malformed"),
        (row("a", "192.0.2.1:1", 1).replace(",1795762800,", ",17957628x0,"), "malformed"),
    ],
)
def test_validation_still_happens_at_parse_time(bad: str, reason: str) -> None:
    with pytest.raises(StatusParseError) as caught:
        parse_status(status([row("b", "192.0.2.2:2", 2), bad]), "udp")
    assert caught.value.reason == reason


def test_duplicate_client_id_is_still_rejected() -> None:
    with pytest.raises(StatusParseError, match="Client ID appears twice"):
        parse_status(status([row("a", "192.0.2.1:1", 5), row("b", "192.0.2.2:2", 5)]), "udp")
