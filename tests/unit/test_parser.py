"""The parser on real OpenVPN output (captured from 2.6.14) and files rebuilt from other versions, through
the entry point and through the reference parser alone."""

from __future__ import annotations

import sys
from collections import Counter

import pytest

from exporter.model import Snapshot
from exporter.parser import (
    StatusParseError,
    TornStatusError,
    normalise_line_ends,
    normalise_time,
    parse_reference,
    parse_status,
    split_real_address,
)
from tests.support.common import CAPTURED, FIXTURES, RECONSTRUCTED, management_block


def reference(data: bytes | str, default_protocol: str = "") -> Snapshot:
    """The reference parser alone, given what parse_status is given."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return parse_reference(normalise_line_ends(text), default_protocol)


@pytest.fixture(autouse=True, params=["parse_status", "parse_reference"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs twice: through the entry point (the fast parser where it applies) and through
    the reference parser alone, so the reference is held to the same expectations on well-formed input."""
    if request.param == "parse_reference":
        monkeypatch.setattr(sys.modules[__name__], "parse_status", reference)


def parse_file(path: str, protocol: str = "udp") -> Snapshot:
    return parse_status((FIXTURES / path).read_bytes(), protocol)


# What each capture really holds, read off the files by hand: (CN, host, virtual address, rx, tx).
UDP_LAB_CNS = Counter({"client1": 2, "client2": 1})


@pytest.mark.parametrize("version", [1, 2, 3])
def test_udp_lab_same_sessions_in_every_status_version(version: int) -> None:
    snap = parse_file(f"captured-2.6.14/server-udp-status-v{version}.log")
    assert snap.kind == "server"
    assert snap.status_version == version
    assert Counter(s.common_name for s in snap.sessions) == UDP_LAB_CNS
    assert {s.virtual_address for s in snap.sessions} == {"10.81.0.2", "10.81.0.3", "10.81.0.4"}
    assert {s.virtual_ipv6_address for s in snap.sessions} == {"fd00:81::1000", "fd00:81::1001", "fd00:81::1002"}
    assert all(s.remote_host == "127.0.0.1" and s.remote_port.isdigit() for s in snap.sessions)
    assert all(s.protocol == "udp" for s in snap.sessions)
    assert len(snap.routes) == 6


def test_udp_v3_exact_rows() -> None:
    snap = parse_file("captured-2.6.14/server-udp-status-v3.log")
    rows = [
        (s.common_name, s.remote_port, s.virtual_address, s.bytes_received, s.bytes_sent, s.client_id, s.peer_id)
        for s in snap.sessions
    ]
    assert rows == [
        ("client1", "58112", "10.81.0.2", 7444, 7384, "0", "0"),
        ("client2", "40972", "10.81.0.3", 6393, 6331, "1", "1"),
        ("client1", "43367", "10.81.0.4", 7446, 7384, "2", "2"),
    ]
    assert snap.version == "2.6.14"
    assert snap.product == "OpenVPN"
    assert snap.updated_epoch == 1795756450
    assert snap.global_stat("dco_enabled") == "0"
    assert snap.sessions[0].connected_since == "2026-11-27 05:14:06"
    assert snap.sessions[0].connected_since_epoch == 1795756446
    assert snap.sessions[0].cipher == "AES-256-GCM"
    assert snap.sessions[0].username == "UNDEF"


@pytest.mark.parametrize("version", [1, 2, 3])
def test_tcp_userpass_lab_in_every_status_version(version: int) -> None:
    snap = parse_file(f"captured-2.6.14/server-tcp-userpass-status-v{version}.log", "tcp")
    assert sorted(s.common_name for s in snap.sessions) == ["client2", "client3"]
    assert {s.virtual_address for s in snap.sessions} == {"10.82.0.2", "10.82.0.3"}
    assert all(s.protocol == "tcp" for s in snap.sessions)
    if version > 1:  # v1 has no Username column
        assert {s.common_name: s.username for s in snap.sessions} == {"client2": "bob", "client3": "alice"}


def test_v1_joins_virtual_address_by_real_address() -> None:
    snap = parse_file("captured-2.6.14/server-udp-status-v1.log")
    by_port = {s.remote_port: (s.virtual_address, s.virtual_ipv6_address) for s in snap.sessions}
    assert by_port == {
        "49227": ("10.81.0.2", "fd00:81::1000"),
        "39394": ("10.81.0.3", "fd00:81::1001"),
        "38458": ("10.81.0.4", "fd00:81::1002"),
    }
    assert snap.version == ""
    assert snap.updated_text == "2026-11-27 05:13:52"


def test_handshake_row_is_a_session_in_handshake() -> None:
    snap = parse_file("captured-2.6.14/server-status-v3-during-handshake.log")
    assert len(snap.sessions) == 1
    assert snap.sessions[0].in_handshake
    assert snap.sessions[0].virtual_address == ""


def test_pending_auth_row_has_cn_but_no_address() -> None:
    (session,) = parse_file("captured-2.6.14/server-status-v3-pending-auth.log").sessions
    assert (session.common_name, session.username, session.virtual_address) == ("client1", "carol", "")
    assert not session.in_handshake


@pytest.mark.parametrize(
    "path", ["captured-2.6.14/server-status-v3-no-clients.log", "reconstructed/v3_2.6.17_no_clients.status"]
)
def test_idle_server_parses_with_no_sessions(path: str) -> None:
    snap = parse_file(path)
    assert snap.sessions == ()
    assert snap.version.startswith("2.6.")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("captured-2.6.14/torn-read-v3-junk-after-END.log", "after END"),
        ("captured-2.6.14/torn-read-v3-no-END.log", "does not end with END"),
    ],
)
def test_torn_captures_are_reported_as_torn(path: str, message: str) -> None:
    with pytest.raises(TornStatusError, match=message) as caught:
        parse_file(path)
    assert caught.value.reason == "torn"


@pytest.mark.parametrize("name", ["tcp", "udp-v1", "udp-v2", "udp-v3"])
def test_client_mode_statistics(name: str) -> None:
    snap = parse_file(f"captured-2.6.14/client-status-{name}.log")
    assert snap.kind == "client"
    stats = dict(snap.client_stats)
    assert stats["TUN/TAP read bytes"] == 5236
    assert stats["Auth read bytes"] == 5188
    assert snap.sessions == ()


@pytest.mark.parametrize("command", ["status 3", "status 2", "status 1", "status"])
def test_management_status_replies_parse_with_crlf(command: str) -> None:
    text = management_block(CAPTURED / "mgmt-tcp-session.txt", command)
    assert "\r\n" in text
    snap = parse_status(text, "udp")
    assert Counter(s.common_name for s in snap.sessions) == UDP_LAB_CNS
    assert {s.remote_port for s in snap.sessions} == {"58112", "40972", "43367"}


def test_reconstructed_single_client_same_in_all_versions() -> None:
    keys = []
    for name in ("v1_2.6.15_tcp_single", "v2_2.6.15_tcp_single", "v3_2.6.15_tcp_single"):
        (s,) = parse_status((RECONSTRUCTED / f"{name}.status").read_bytes(), "tcp").sessions
        keys.append((s.common_name, s.remote_host, s.remote_port, s.virtual_address, s.bytes_received, s.bytes_sent))
    assert keys == [("bookworm.openvpn.com", "78.99.236.15", "53993", "10.0.0.2", 3557, 3868)] * 3


def test_title_with_git_tag_gives_the_version() -> None:
    assert parse_file("reconstructed/v3_2.6.15_tcp_single.status").version == "2.6.15"


def test_openvpn_24_layout_and_ctime_timestamps() -> None:
    snap = parse_file("reconstructed/v3_2.4.12_no_cipher_column.status")
    (s,) = snap.sessions
    assert snap.version == "2.4.12"
    assert s.cipher == ""
    assert s.connected_since == "2025-11-03 20:40:03"
    assert snap.updated_epoch == 1762202470
    assert snap.routes[0].last_ref == "2025-11-03 20:41:09"


def test_openvpn_27_protocol_prefixes() -> None:
    snap = parse_file("reconstructed/v3_2.7.1_unified.status", "udp")
    got = [(s.common_name, s.protocol, s.remote_host, s.remote_port) for s in snap.sessions]
    assert got == [
        ("bookworm.openvpn.com", "tcp", "192.168.200.10", "47054"),
        ("bullseye.openvpn.com", "udp", "192.168.200.20", "45209"),
        ("v6client", "udp", "2001:db8::10", "51000"),
    ]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("1.2.3.4:1194", ("", "1.2.3.4", "1194")),
        ("2001:db8::1", ("", "2001:db8::1", "")),
        ("udp4:203.0.113.5:52137", ("udp", "203.0.113.5", "52137")),
        ("tcp4-server:192.0.2.10:47054", ("tcp", "192.0.2.10", "47054")),
        ("udp6:[2001:db8::10]:51000", ("udp", "2001:db8::10", "51000")),
        ("tcp6-server:[2001:db8::7]:443", ("tcp", "2001:db8::7", "443")),
        ("[2001:db8::2]:1194", ("", "2001:db8::2", "1194")),
        ("::ffff:10.1.2.3", ("", "::ffff:10.1.2.3", "")),
    ],
)
def test_real_address_forms(address: str, expected: tuple[str, str, str]) -> None:
    assert split_real_address(address) == expected


def test_normalise_time() -> None:
    assert normalise_time("Thu Apr 30 13:55:44 2020") == "2020-04-30 13:55:44"
    assert normalise_time("Mon Nov  3 20:40:03 2025") == "2025-11-03 20:40:03"
    assert normalise_time("2025-11-03 20:40:03") == "2025-11-03 20:40:03"
    assert normalise_time("yesterday") == ""


V2_HEADER = (
    "TITLE,OpenVPN 2.6.14 x86_64-pc-linux-gnu\nTIME,2026-11-27 05:14:02,1795756442\n"
    "HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,Bytes Received,"
    "Bytes Sent,Connected Since,Connected Since (time_t),Username,Client ID,Peer ID,Data Channel Cipher\n"
)
V2_TAIL = (
    "HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref,Last Ref (time_t)\n"
    "GLOBAL_STATS,Max bcast/mcast queue length,0\nEND\n"
)


def v2_row(cn: str, user: str = "UNDEF", cid: int = 0, port: int = 1000) -> str:
    return f"CLIENT_LIST,{cn},10.0.0.1:{port},10.8.0.2,,100,200,2026-11-27 05:13:57,1795756437,{user},{cid},{cid},AES\n"


def test_comma_in_common_name_is_recovered_in_v2() -> None:
    snap = parse_status(V2_HEADER + v2_row("Smith, John") + V2_TAIL)
    (s,) = snap.sessions
    assert (s.common_name, s.bytes_received, s.username) == ("Smith, John", 100, "UNDEF")


def test_comma_in_common_name_is_recovered_in_v1() -> None:
    text = (
        "OpenVPN CLIENT LIST\nUpdated,2026-11-27 05:13:52\n"
        "Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since\n"
        "Doe, Jane,127.0.0.1:49227,7446,7384,2026-11-27 05:13:48\n"
        "ROUTING TABLE\nVirtual Address,Common Name,Real Address,Last Ref\n"
        "10.81.0.3,Doe, Jane,127.0.0.1:49227,2026-11-27 05:13:50\n"
        "GLOBAL STATS\nMax bcast/mcast queue length,0\nEND\n"
    )
    (s,) = parse_status(text).sessions
    assert (s.common_name, s.virtual_address, s.bytes_sent) == ("Doe, Jane", "10.81.0.3", 7384)


def test_ambiguous_commas_are_skipped_not_guessed() -> None:
    snap = parse_status(V2_HEADER + v2_row("a,b", user="c,d") + v2_row("ok", cid=1, port=1001) + V2_TAIL)
    assert [s.common_name for s in snap.sessions] == ["ok"]
    assert snap.skipped_lines == 1


def test_unknown_line_types_and_debug_errors_are_skipped() -> None:
    text = (
        V2_HEADER
        + v2_row("a")
        + "HEADER,ERRORS,Foo\nERRORS,something\n"
        + V2_TAIL.replace("END", "FUTURE_STATS,x,1\nEND")
    )
    snap = parse_status(text)
    assert [s.common_name for s in snap.sessions] == ["a"]
    assert snap.skipped_lines == 3


@pytest.mark.parametrize(
    "seam",
    ["ENT_LIST,b,10.0.0.1:2,10.8.0.3,,1,2,x,1,UNDEF,5,5,AES\n", "0.0.1:58112,10.81.0.2\n", "8\t2026-11-27\n"],
)
def test_torn_seam_in_the_middle_is_rejected(seam: str) -> None:
    with pytest.raises(StatusParseError):
        parse_status(V2_HEADER + v2_row("a") + seam + V2_TAIL)


def test_mixed_old_and_new_rows_are_rejected_by_client_id() -> None:
    with pytest.raises(StatusParseError, match="Client ID"):
        parse_status(V2_HEADER + v2_row("a", cid=3) + v2_row("b", cid=3, port=2) + V2_TAIL)


def test_sections_out_of_order_are_rejected() -> None:
    text = V2_HEADER + V2_TAIL.replace("END\n", "") + v2_row("late") + "END\n"
    with pytest.raises(StatusParseError, match="outside the client list"):
        parse_status(text)


def test_wrong_column_count_in_v3_is_rejected() -> None:
    text = (RECONSTRUCTED / "v3_2.6.15_tcp_single.status").read_text().replace("\tAES-256-GCM\n", "\n")
    with pytest.raises(StatusParseError, match="columns"):
        parse_status(text)


@pytest.mark.parametrize(
    "data",
    [b"", b"\n\n", b"END\n", b"\x00\x01\x02END\n", b"hello world\nEND\n", b"TITLE\tx\nEND\n", b"\xff\xfe" * 50],
)
def test_garbage_gives_the_typed_error(data: bytes) -> None:
    with pytest.raises(StatusParseError):
        parse_status(data)
