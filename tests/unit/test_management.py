"""The management-interface source against replays of real OpenVPN 2.6.14 management sessions.

The real-OpenVPN counterpart of these tests is tests/mgmt/.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.config import parse_config
from exporter.hub import Hub
from exporter.sources.management import ManagementSource, parse_target, version_from_reply
from tests.unit.mgmt_replay import ReplayServer, load_capture

UNIX_CAPTURE = "mgmt-unix-session.txt"
TCP_CAPTURE = "mgmt-tcp-session.txt"


@pytest.fixture
def sock_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    import tempfile

    return Path(tempfile.mkdtemp(prefix="mgmt-", dir="/tmp"))


@pytest.fixture
def servers() -> Iterator[list[ReplayServer]]:
    started: list[ReplayServer] = []
    yield started
    for server in started:
        server.close()


def serve(servers: list[ReplayServer], capture: str, where: Path | None, **options: object) -> ReplayServer:
    server = ReplayServer(load_capture(capture), unix_path=where, **options)  # type: ignore[arg-type]
    servers.append(server)
    return server


def source(address: str, password_file: str = "", timeout: float = 2.0, protocol: str = "udp") -> ManagementSource:
    return ManagementSource("mgmt", address, protocol, password_file, timeout)


def test_unix_socket_session_reports_the_captured_clients(servers: list[ReplayServer], sock_dir: Path) -> None:
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock")
    reading = source(server.address).refresh()
    assert reading.error == ""
    assert reading.available
    assert reading.kind == "management"
    assert reading.target == server.address
    assert reading.snapshot is not None
    rows = sorted((s.common_name, s.username, s.virtual_address, s.bytes_received) for s in reading.snapshot.sessions)
    assert rows == [("client2", "bob", "10.82.0.2", 7591), ("client3", "alice", "10.82.0.3", 7596)]
    assert reading.snapshot.version == "2.6.14"
    assert reading.snapshot.global_stat("dco_enabled") == "0"
    # last_update is the TIME line's epoch, not the moment of the read.
    assert reading.last_update == 1795756453.0
    # The conversation a real OpenVPN saw, in order, and the socket closed afterwards.
    server.settle()
    assert server.received == ["version", "status 3", "quit"]
    assert server.closed_by_client == 1


def test_tcp_session_reports_three_sessions(servers: list[ReplayServer]) -> None:
    server = serve(servers, TCP_CAPTURE, None)
    assert server.address.startswith("127.0.0.1:")
    reading = source(server.address, protocol="tcp").refresh()
    assert reading.error == ""
    assert reading.snapshot is not None
    assert sorted(s.common_name for s in reading.snapshot.sessions) == ["client1", "client1", "client2"]
    assert {s.protocol for s in reading.snapshot.sessions} == {"tcp"}
    assert len(reading.snapshot.routes) == 6


def test_never_holds_the_socket_between_refreshes(servers: list[ReplayServer], sock_dir: Path) -> None:
    # The replay server, like OpenVPN, serves one client at a time: three refreshes in a row only work
    # if each one quits and closes.
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock")
    mgmt = source(server.address, timeout=1.0)
    for _ in range(3):
        assert mgmt.refresh().error == ""
    server.settle()
    assert server.connections == 3
    assert server.closed_by_client == 3
    assert server.max_concurrent == 1


@pytest.mark.parametrize("chunk", [1, 7])
def test_answers_split_anywhere_are_reassembled(servers: list[ReplayServer], sock_dir: Path, chunk: int) -> None:
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", chunk=chunk)
    reading = source(server.address).refresh()
    assert reading.error == ""
    assert reading.snapshot is not None
    assert len(reading.snapshot.sessions) == 2


def test_real_time_notifications_are_skipped_anywhere(servers: list[ReplayServer], sock_dir: Path) -> None:
    notes = b">CLIENT:ESTABLISHED,7\r\n>CLIENT:ENV,common_name=x\r\n>CLIENT:ENV,END\r\n"

    def interleave(command: str, answer: bytes) -> bytes:
        lines = answer.splitlines(keepends=True)
        return b"".join([notes, *lines[:1], notes, *lines[1:-1], notes, *lines[-1:]])

    server = serve(
        servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", before_greeting=b">HOLD:Waiting for hold release:0\r\n",
        transform=interleave,
    )  # fmt: skip
    reading = source(server.address).refresh()
    assert reading.error == ""
    assert reading.snapshot is not None
    assert sorted(s.common_name for s in reading.snapshot.sessions) == ["client2", "client3"]
    assert reading.snapshot.version == "2.6.14"


def test_a_read_ends_only_at_a_line_that_is_exactly_end(servers: list[ReplayServer], sock_dir: Path) -> None:
    def rename(command: str, answer: bytes) -> bytes:
        # Common names that contain or are "END" must not end the read early.
        return answer.replace(b"\tclient3\t", b"\tVENDOR-01\t").replace(b"\tclient2\t", b"\tEND\t")

    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", transform=rename)
    reading = source(server.address).refresh()
    assert reading.error == ""
    assert reading.snapshot is not None
    assert sorted(s.common_name for s in reading.snapshot.sessions) == ["END", "VENDOR-01"]
    assert len(reading.snapshot.routes) == 2


def test_password_is_sent_from_the_file_without_its_newline(
    servers: list[ReplayServer], sock_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "mgmt.pass"
    secret.write_text("s3cret pass\n")
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", password="s3cret pass")
    reading = source(server.address, password_file=str(secret)).refresh()
    assert reading.error == ""
    assert reading.snapshot is not None
    assert len(reading.snapshot.sessions) == 2
    server.settle()
    assert server.received[0] == "<password>s3cret pass"


@pytest.mark.parametrize("error_line", [b"", b"ERROR: bad password\r\n"], ids=["prompt-again", "error-line"])
def test_wrong_password_is_an_auth_error(
    servers: list[ReplayServer], sock_dir: Path, tmp_path: Path, error_line: bytes
) -> None:
    secret = tmp_path / "mgmt.pass"
    secret.write_text("wrong\n")
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", password="right", bad_password_line=error_line)
    reading = source(server.address, password_file=str(secret)).refresh()
    assert not reading.available
    assert "password rejected" in reading.error
    assert dict(reading.read_errors) == {"auth": 1}


def test_password_asked_but_none_configured(servers: list[ReplayServer], sock_dir: Path) -> None:
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", password="right")
    reading = source(server.address).refresh()
    assert "set password_file" in reading.error
    assert dict(reading.read_errors) == {"auth": 1}


def test_unreadable_password_file_is_an_auth_error(servers: list[ReplayServer], sock_dir: Path, tmp_path: Path) -> None:
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", password="right")
    reading = source(server.address, password_file=str(tmp_path / "absent")).refresh()
    assert "password file" in reading.error
    assert dict(reading.read_errors) == {"auth": 1}


def test_a_silent_server_times_out_in_time(servers: list[ReplayServer], sock_dir: Path) -> None:
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", silent=True)
    started = time.monotonic()
    reading = source(server.address, timeout=0.3).refresh()
    assert time.monotonic() - started < 2
    assert not reading.available
    assert dict(reading.read_errors) == {"timeout": 1}
    assert "greeting" in reading.error


def test_a_trickling_server_times_out_per_step(servers: list[ReplayServer], sock_dir: Path) -> None:
    # Bytes keep arriving, but the status answer would take ~several seconds: the step deadline stops it.
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", chunk=16, chunk_pause=0.02)
    started = time.monotonic()
    reading = source(server.address, timeout=0.5).refresh()
    assert time.monotonic() - started < 3
    assert dict(reading.read_errors) == {"timeout": 1}


def test_missing_socket_and_refused_connections(sock_dir: Path) -> None:
    missing = source(str(sock_dir / "nothing.sock")).refresh()
    assert dict(missing.read_errors) == {"missing": 1}
    stale = sock_dir / "stale.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()  # the socket file stays, nobody listens: what a crashed OpenVPN leaves
    assert dict(source(str(stale)).refresh().read_errors) == {"refused": 1}
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    tcp = source(f"127.0.0.1:{port}").refresh()
    assert dict(tcp.read_errors) == {"refused": 1}
    assert "refused" in tcp.error


def test_not_a_management_interface_is_malformed(servers: list[ReplayServer], sock_dir: Path) -> None:
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", before_greeting=b"SSH-2.0-OpenSSH_9.2\r\n")
    reading = source(server.address).refresh()
    assert dict(reading.read_errors) == {"malformed": 1}


def test_garbled_status_is_malformed(servers: list[ReplayServer], sock_dir: Path) -> None:
    def garble(command: str, answer: bytes) -> bytes:
        return b"HEADER\tCLIENT_LIST\tnonsense\r\nCLIENT_LIST\tx\r\nEND\r\n" if command == "status 3" else answer

    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", transform=garble)
    reading = source(server.address).refresh()
    assert not reading.available
    assert dict(reading.read_errors) == {"malformed": 1}


def test_failure_keeps_last_snapshot_but_source_is_down(
    servers: list[ReplayServer], sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock")
    mgmt = source(server.address, timeout=0.5)
    good = mgmt.refresh()
    assert good.available
    assert good.snapshot is not None
    server.close()
    (sock_dir / "mgmt.sock").unlink()
    caplog.set_level(logging.INFO, logger="openvpn_exporter")
    bad = [mgmt.refresh() for _ in range(3)]
    assert all(not r.available and r.snapshot == good.snapshot for r in bad)
    assert not bad[-1].is_up(now=1795756453.0, stale_after=180)
    assert dict(bad[-1].read_errors) == {"missing": 3}
    # One warning for the transition, not one per refresh.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    # Back again: one info line.
    serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock")
    caplog.clear()
    assert mgmt.refresh().available
    assert mgmt.refresh().available
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_generation_changes_only_when_the_snapshot_does(servers: list[ReplayServer], sock_dir: Path) -> None:
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock")
    mgmt = source(server.address)
    first, second = mgmt.refresh(), mgmt.refresh()
    assert first.generation == second.generation == 1


def test_hub_builds_a_management_source_from_config(servers: list[ReplayServer], sock_dir: Path) -> None:
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock")
    config = parse_config(
        f"sources:\n  - name: mgmt\n    management: {server.address}\n    protocol: tcp\n    timeout: 2s\n"
        "stale_after: 0\n"
    )
    hub = Hub(config)
    state = hub.refresh()
    assert state.up
    assert sorted(s.common_name for _, s in state.sessions()) == ["client2", "client3"]
    assert {s.protocol for _, s in state.sessions()} == {"tcp"}
    assert state.version() == "2.6.14"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/run/openvpn/management.sock", ("unix", "/run/openvpn/management.sock")),
        ("management.sock", ("unix", "management.sock")),
        ("127.0.0.1:7505", ("tcp", ("127.0.0.1", 7505))),
        ("localhost:7505", ("tcp", ("localhost", 7505))),
        ("[::1]:7505", ("tcp", ("::1", 7505))),
        ("/run/a:1", ("unix", "/run/a:1")),
    ],
)
def test_parse_target(target: str, expected: tuple[str, object]) -> None:
    assert parse_target(target) == expected


def test_version_from_reply() -> None:
    line = "OpenVPN Version: OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO]"
    assert version_from_reply(line) == "2.6.14"
    assert version_from_reply("OpenVPN Version: ") == ""


def test_one_timeout_bounds_the_whole_conversation(servers: list[ReplayServer], sock_dir: Path) -> None:
    # Each answer comes well inside the timeout, but the conversation as a whole would not.
    def slow(command: str, answer: bytes) -> bytes:
        time.sleep(0.35)
        return answer

    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", transform=slow)
    started = time.monotonic()
    reading = source(server.address, timeout=0.5).refresh()
    took = time.monotonic() - started
    assert dict(reading.read_errors) == {"timeout": 1}
    assert "within 0.5s" in reading.error
    assert took < 1.5  # the steps one by one would all have answered, after 1.05 s


def test_an_endless_reply_stops_at_the_size_cap(
    servers: list[ReplayServer], sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporter.sources import management

    monkeypatch.setattr(management, "MAX_REPLY_BYTES", 256 * 1024)
    endless = b"CLIENT_LIST\tx\t1.2.3.4:5\t10.8.0.2\t\t1\t1\t2026-01-01 00:00:00\t1\tUNDEF\t0\t0\tAES\r\n" * 20_000

    def flood(command: str, answer: bytes) -> bytes:
        return endless if command.startswith("status") else answer

    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", transform=flood)
    reading = source(server.address, timeout=5).refresh()
    assert dict(reading.read_errors) == {"malformed": 1}
    assert f"over {256 * 1024} bytes" in reading.error


def test_concurrent_refreshes_share_one_conversation_and_a_slow_source_delays_no_other(
    servers: list[ReplayServer], sock_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import threading

    from exporter import hub as hub_module
    from tests.support.common import CAPTURED

    monkeypatch.setattr(hub_module, "REFRESH_WAIT", 0.2)
    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", silent=True)
    status = tmp_path / "udp.status"
    shutil.copy(CAPTURED / "server-udp-status-v3.log", status)
    config = parse_config(
        f"sources:\n  - name: file\n    path: {status}\n  - name: mgmt\n    management: {server.address}\n"
        "    timeout: 2s\nstale_after: 0\n"
    )
    hub = Hub(config)
    first = hub.refresh()  # waits for the first reading of each: the silent one times out after 2 s
    assert [r.available for r in first.readings] == [True, False]
    results: list[float] = []

    def scrape() -> None:
        started = time.monotonic()
        state = hub.refresh()
        assert state.readings[0].available and state.readings[0].snapshot is not None
        results.append(time.monotonic() - started)

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each scrape waited only the short wait, with the file's data, while one conversation ran for all.
    assert len(results) == 4 and max(results) < 1.2
    time.sleep(2.5)
    assert server.connections == 2  # the first refresh's, then the one the four scrapes shared
    hub.close()


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1:75050", "127.0.0.1:99999999999999999999"],  # ports out of range: OverflowError, not OSError
)
def test_any_exception_in_a_source_is_that_sources_error(tmp_path: Path, target: str) -> None:
    import dataclasses
    import shutil

    from exporter.config import SourceConfig
    from tests.support.common import CAPTURED

    status = tmp_path / "udp.status"
    shutil.copy(CAPTURED / "server-udp-status-v3.log", status)
    config = parse_config(f"sources:\n  - name: file\n    path: {status}\nstale_after: 0\n")
    # The config checks refuse both targets now; built past them, they stand for any error a source does not
    # expect, which must stay that source's.
    bad = SourceConfig("bad", "management", target, "auto", "", 5.0)
    nul = SourceConfig("nul", "file", f"{tmp_path}/a\0b", "auto", "", 5.0)
    config = dataclasses.replace(config, sources=(*config.sources, bad, nul))
    state = Hub(config).refresh()
    good, bad, nul = state.readings
    assert good.available and good.error == ""
    assert not bad.available and "unexpected error" in bad.error
    assert dict(bad.read_errors) == {"internal": 1}
    assert not nul.available and dict(nul.read_errors) == {"internal": 1}
    assert state.up


def test_an_endless_line_is_refused_early(servers: list[ReplayServer], sock_dir: Path) -> None:
    from exporter.sources import management

    def one_line(command: str, answer: bytes) -> bytes:
        return b"x" * (4 * management.MAX_LINE_BYTES) if command.startswith("status") else answer

    server = serve(servers, UNIX_CAPTURE, sock_dir / "mgmt.sock", transform=one_line)
    reading = source(server.address, timeout=5).refresh()
    assert dict(reading.read_errors) == {"malformed": 1}
    assert f"a line of over {management.MAX_LINE_BYTES} bytes" in reading.error
