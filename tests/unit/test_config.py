"""exporter.yaml: every accepted spelling, and one file per error case run through the real command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import DEFAULT_STALE_AFTER, ConfigError, parse_config, parse_duration
from tests.support.common import FIXTURES

BAD_CONFIGS = sorted((FIXTURES / "configs").glob("bad-*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0] if path.read_text() else ""
    assert first.startswith("# expect: "), f"{path.name} must say what error it expects"
    return first[len("# expect: ") :]


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=[p.stem for p in BAD_CONFIGS])
def test_bad_config_exits_2_with_one_line(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", f"--config.file={path}", "--web.listen-address=127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"openvpn-exporter: {path}: ")
    assert expected_message(path) in lines[0]
    assert "Traceback" not in result.stderr


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
