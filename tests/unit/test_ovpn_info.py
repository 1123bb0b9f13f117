"""`ovpn_info` names the versions of live sources only; `unknown` only when no live source carries one."""

from __future__ import annotations

import shutil
from pathlib import Path

from starlette.testclient import TestClient

from exporter.app import ExporterApp
from exporter.config import parse_config
from tests.support.common import CAPTURED


def info_lines(client: TestClient) -> list[str]:
    return [line for line in client.get("/metrics").text.splitlines() if line.startswith("ovpn_info{")]


def metrics_client(config_text: str) -> TestClient:
    return TestClient(ExporterApp(parse_config(config_text)).asgi())


def test_a_version_1_file_beside_a_version_3_file_adds_no_unknown_line() -> None:
    config = (
        f"ovpntcpstatus: {CAPTURED / 'server-tcp-userpass-status-v1.log'}\n"
        f"ovpnudpstatus: {CAPTURED / 'server-udp-status-v3.log'}\nstale_after: 0\n"
    )
    with metrics_client(config) as client:
        assert info_lines(client) == ['ovpn_info{product="OpenVPN",version="2.6.14"} 1']


def test_version_1_files_alone_give_unknown() -> None:
    config = f"ovpntcpstatus: {CAPTURED / 'server-tcp-userpass-status-v1.log'}\nstale_after: 0\n"
    with metrics_client(config) as client:
        assert info_lines(client) == ['ovpn_info{product="OpenVPN",version="unknown"} 1']


def test_a_stale_source_gives_no_info_line(tmp_path: Path) -> None:
    # The v3 file's TIME line is from 2026-11-27: stale at 60 s. The v1 file's age is its mtime: fresh.
    stale, fresh = tmp_path / "udp.status", tmp_path / "tcp.status"
    shutil.copy(CAPTURED / "server-udp-status-v3.log", stale)
    shutil.copy(CAPTURED / "server-tcp-userpass-status-v1.log", fresh)
    with metrics_client(f"ovpnudpstatus: {stale}\novpntcpstatus: {fresh}\nstale_after: 60\n") as client:
        assert info_lines(client) == ['ovpn_info{product="OpenVPN",version="unknown"} 1']
        fresh.unlink()  # now nothing is live: no info line at all, and the probe says down
        text = client.get("/metrics").text
    assert "ovpn_info" not in text
    assert "probe_success{" in text and text.endswith(" 0\n")


def test_a_deleted_file_drops_its_version(tmp_path: Path) -> None:
    gone, kept = tmp_path / "udp.status", tmp_path / "tcp.status"
    shutil.copy(CAPTURED / "server-udp-status-v3.log", gone)
    (kept).write_text((CAPTURED / "server-tcp-userpass-status-v3.log").read_text().replace("2.6.14", "2.6.15"))
    with metrics_client(f"ovpnudpstatus: {gone}\novpntcpstatus: {kept}\nstale_after: 0\n") as client:
        assert info_lines(client) == [
            'ovpn_info{product="OpenVPN",version="2.6.14"} 1',
            'ovpn_info{product="OpenVPN",version="2.6.15"} 1',
        ]
        gone.unlink()
        assert info_lines(client) == ['ovpn_info{product="OpenVPN",version="2.6.15"} 1']
