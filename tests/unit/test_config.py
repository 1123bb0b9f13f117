"""exporter.yaml: every accepted spelling, and one file per error case run through the real command.

Each bad file must stop the exporter within 15 s with exit status 2 and one line under 1,000
characters, whatever it holds: a YAML error, a wrong type, a value that would break a scrape later
(a port over 65535, an absurd timeout, a NUL byte in a path, NaN), or something built to hurt the
reader (a billion-laughs alias bomb, deep nesting, a 5,000-digit integer, megabytes of file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from exporter.config import DEFAULT_STALE_AFTER, ConfigError, parse_config, parse_duration
from tests.support.common import FIXTURES

BAD_CONFIGS = sorted((FIXTURES / "configs").glob("bad-*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0] if path.read_text() else ""
    assert first.startswith("# expect: "), f"{path.name} must say what error it expects"
    return first[len("# expect: ") :]


def start_fails(*args: str) -> str:
    """The one line the exporter prints when it refuses to start with `args` (exit 2 within 15 s)."""
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--web.listen-address=127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert result.returncode == 2, result.stderr[:2000]
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert len(lines[0]) < 1000
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=[p.stem for p in BAD_CONFIGS])
def test_bad_config_exits_2_with_one_line(path: Path) -> None:
    line = start_fails(f"--config.file={path}")
    assert line.startswith(f"openvpn-exporter: {path}: ")
    assert expected_message(path) in line


def test_a_config_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yaml"
    path.write_text("ovpnudpstatus: /run/openvpn/udp.status\n" + "# padding\n" * 600_000)  # 6 MB
    assert "is over 1048576 bytes" in start_fails(f"--config.file={path}")


def test_a_fifo_at_the_config_path_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yaml"
    os.mkfifo(path)
    assert "config file is not a regular file" in start_fails(f"--config.file={path}")


@pytest.mark.parametrize("cost", ["03", "99"])
def test_a_bcrypt_cost_outside_4_to_31_is_refused_at_start(tmp_path: Path, cost: str) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text("ovpnudpstatus: /run/openvpn/udp.status\n")
    web = tmp_path / "web.yml"
    good = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    web.write_text(f"basic_auth_users:\n  prom: '$2b${cost}${good[7:]}'\n")
    line = start_fails(f"--config.file={config}", f"--web.config.file={web}")
    assert f"basic_auth_users.prom: the bcrypt cost is {cost}; it must be from 04 to 31" in line


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"openvpn-exporter: {tmp_path / 'nope.yaml'}: config file not found (pass its path with --config.file)"
    )


@pytest.mark.parametrize(
    ("key", "name", "protocol"),
    [
        ("ovpntcpstatus", "tcp", "tcp"),
        ("ovpn_tcp_status", "tcp", "tcp"),
        ("ovpnudpstatus", "udp", "udp"),
        ("ovpn_udp_status", "udp", "udp"),
        ("ovpn_status", "status", "auto"),
    ],
)
def test_every_spelling_of_the_original(key: str, name: str, protocol: str) -> None:
    config = parse_config(f"{key}: /run/openvpn/x.status\n")
    (source,) = config.sources
    assert (source.name, source.kind, source.target, source.protocol) == (
        name,
        "file",
        "/run/openvpn/x.status",
        protocol,
    )
    assert config.server_name == "openvpn-server"
    assert config.stale_after == DEFAULT_STALE_AFTER


def test_both_files_and_server_name() -> None:
    config = parse_config("ovpntcpstatus: /a\novpnudpstatus: /b\nserver_name: vpn-eu-1\n")
    assert [(s.name, s.target) for s in config.sources] == [("tcp", "/a"), ("udp", "/b")]
    assert config.server_name == "vpn-eu-1"


def test_empty_value_leaves_a_source_unconfigured() -> None:
    config = parse_config('ovpntcpstatus: ""\novpnudpstatus: /b\n')
    assert [s.name for s in config.sources] == ["udp"]


def test_general_sources_form() -> None:
    config = parse_config(
        "sources:\n"
        "  - {name: a, path: /run/openvpn/*.status}\n"
        "  - {name: m, management: /run/openvpn/mgmt.sock, password_file: /etc/pw, protocol: tcp, timeout: 2s}\n"
        "stale_after: 3m\n"
    )
    assert [(s.name, s.kind, s.protocol) for s in config.sources] == [("a", "file", "auto"), ("m", "management", "tcp")]
    assert config.sources[1].password_file == "/etc/pw"
    assert config.sources[1].timeout == 2.0
    assert config.stale_after == 180.0


@pytest.mark.parametrize(("value", "seconds"), [(90, 90.0), ("90s", 90.0), ("3m", 180.0), ("500ms", 0.5), (0, 0.0)])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, "x") == seconds


def test_negative_duration_is_rejected() -> None:
    with pytest.raises(ConfigError, match="must not be negative"):
        parse_duration(-1, "stale_after")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("sources:\n  - {name: m, management: '127.0.0.1:7505'}\n", "127.0.0.1:7505"),
        ("sources:\n  - {name: m, management: '[::1]:65535'}\n", "[::1]:65535"),
        ("sources:\n  - {name: m, management: /run/openvpn/mgmt:1}\n", "/run/openvpn/mgmt:1"),
    ],
)
def test_management_targets_that_are_accepted(text: str, value: str) -> None:
    (source,) = parse_config(text).sources
    assert source.target == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{name: m, management: '127.0.0.1:0'}", "the port must be from 1 to 65535"),
        ("{name: m, management: 'vpn:123456789'}", "the port must be from 1 to 65535"),
        ("{name: m, management: 'vpn:7505', timeout: 0}", "timeout: must be from 0.01s to 300s"),
        ("{name: m, management: 'vpn:7505', timeout: .inf}", "timeout: expected a finite duration"),
        ("{name: m, path: /x, password_file: /p}", "password_file: only a management source"),
        ("{name: m, path: ''}", "path: must not be empty"),
        ("{name: 'a b', path: /x}", "may hold only letters"),
    ],
)
def test_source_values_that_would_break_a_scrape_later(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"sources:\n  - {text}\n", "x.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("x.yaml: sources[0]")


def test_config_check_interval() -> None:
    assert parse_config("ovpn_status: /x\n").config_check_interval == 5.0
    assert parse_config("ovpn_status: /x\nconfig_check_interval: 0\n").config_check_interval == 0.0
    with pytest.raises(ConfigError, match=r"config_check_interval: must be from 0\.1s to 3600s"):
        parse_config("ovpn_status: /x\nconfig_check_interval: 2h\n")
