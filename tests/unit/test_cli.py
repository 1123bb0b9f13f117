"""The command as users run it: a real process, real sockets, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.common import CAPTURED, free_port
from tests.support.exporter_process import wait_ready as support_wait_ready

EXPORTER = [sys.executable, "-m", "exporter"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "exporter.yaml"
    path.write_text(f"ovpnudpstatus: {CAPTURED / 'server-udp-status-v3.log'}\nstale_after: 0\n")
    return path


def wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    support_wait_ready(f"http://127.0.0.1:{port}", proc, output=lambda: proc.stderr.read() if proc.stderr else "")


@pytest.fixture
def running(config: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [*EXPORTER, "--config.file", str(config), f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(port, proc)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode())


def test_version_is_the_projects() -> None:
    import tomllib
    from pathlib import Path

    import yaml

    from exporter import __version__

    root = Path(__file__).parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert __version__ == pyproject["project"]["version"]
    # The release checks the tag against the chart (.ci/release-version.sh) and needs this test green: so
    # the image built for a tag reports that tag too.
    assert __version__ == str(yaml.safe_load((root / "chart" / "Chart.yaml").read_text())["appVersion"])
    result = subprocess.run([*EXPORTER, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.strip() == f"openvpn-exporter {__version__}"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_flags(flag: str) -> None:
    result = subprocess.run([*EXPORTER, flag], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for name in ("--web.listen-address", "--web.telemetry-path", "--config.file", "--web.config.file", "--version"):
        assert name in result.stdout


def test_serves_and_stops_cleanly_on_sigterm(running: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = running
    assert "ovpn_sessions_total 3" in get(port, "/metrics")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_ctrl_c_stops_cleanly(running: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = running
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 0
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_space_separated_flags_and_custom_telemetry_path(config: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*EXPORTER, "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}",
         "--web.telemetry-path", "/probe"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_ready(port, proc)
        assert "probe_success" in get(port, "/probe")
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_port_in_use_is_one_line_and_nonzero(config: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [*EXPORTER, "--config.file", str(config), f"--web.listen-address=127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"openvpn-exporter: cannot listen on 127.0.0.1:{port}: address already in use (another process holds "
        "this port: stop it or choose another with --web.listen-address)"
    )


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("9234", "has no port"),
        ("127.0.0.1:http", "the port must be a number"),
        ("127.0.0.1:70000", "the port must be a number"),
        ("::1:9234", "put an IPv6 address in brackets"),
    ],
)
def test_malformed_listen_address(config: Path, address: str, message: str) -> None:
    result = subprocess.run(
        [*EXPORTER, "--config.file", str(config), f"--web.listen-address={address}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_config_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run([*EXPORTER, "--config.file", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == f"openvpn-exporter: {tmp_path}: is a directory, not a config file"


def test_all_interfaces_listen_answers_on_loopback(config: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*EXPORTER, "--config.file", str(config), f"--web.listen-address=:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_ready(port, proc)
        assert get(port, "/-/healthy") == "OK"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_missing_status_file_is_a_warning_and_the_others_go_on(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text(
        f"ovpntcpstatus: {tmp_path / 'absent.status'}\n"
        f"ovpnudpstatus: {CAPTURED / 'server-udp-status-v3.log'}\nstale_after: 0\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [*EXPORTER, "--config.file", str(config), f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        wait_ready(port, proc)
        assert "ovpn_sessions_total 3" in get(port, "/metrics")
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert f"WARNING source tcp: {tmp_path / 'absent.status'}: status file does not exist (yet)" in stderr
