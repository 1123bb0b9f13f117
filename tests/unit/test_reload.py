"""Reload: SIGHUP and the opt-in `POST /-/reload` re-read exporter.yaml; a bad file keeps the old config."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from exporter.app import ExporterApp
from exporter.config import load_config
from tests.support.common import CAPTURED
from tests.support.exporter_process import ExporterProcess

STATUS = CAPTURED / "server-udp-status-v3.log"
BROKEN = "server_name: [unclosed\n"


def write_config(path: Path, server_name: str, reload_endpoint: bool = False, extra: str = "") -> None:
    path.write_text(
        f"server_name: {server_name}\nstale_after: 0\novpnudpstatus: {STATUS}\n"
        f"enable_reload_endpoint: {'true' if reload_endpoint else 'false'}\n{extra}"
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "exporter.yaml"
    write_config(path, "alpha", reload_endpoint=True)
    return path


def test_post_reload_applies_a_new_config(config_file: Path) -> None:
    exporter = ExporterApp(load_config(config_file))
    with TestClient(exporter.asgi()) as client:
        assert {r["server"] for r in client.get("/sessions").json()} == {"alpha"}
        write_config(config_file, "beta", reload_endpoint=True, extra="metrics: {extended: true}\n")
        response = client.post("/-/reload")
        assert response.status_code == 200
        assert "reloaded" in response.text
        assert {r["server"] for r in client.get("/sessions").json()} == {"beta"}
        # The metrics options of the new config apply too.
        assert "ovpn_source_up" in client.get("/metrics").text


def test_bad_config_is_rejected_and_the_old_one_keeps_serving(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = ExporterApp(load_config(config_file))
    with TestClient(exporter.asgi()) as client:
        before = client.get("/metrics").text
        for broken in (BROKEN, "server_name: x\n", "server_name: x\nsurprise: 1\novpnudpstatus: /x\n"):
            config_file.write_text(broken)
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="openvpn_exporter"):
                response = client.post("/-/reload")
            assert response.status_code == 400
            assert str(config_file) in response.text
            assert [r.getMessage() for r in caplog.records if "reload rejected" in r.getMessage()]
            assert {r["server"] for r in client.get("/sessions").json()} == {"alpha"}
            assert client.get("/metrics").text == before
        # The file removed altogether: the same.
        config_file.unlink()
        assert client.post("/-/reload").status_code == 400
        assert client.get("/-/ready").status_code == 200


def test_reload_endpoint_is_off_unless_enabled(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yaml"
    write_config(path, "alpha", reload_endpoint=False)
    exporter = ExporterApp(load_config(path))
    with TestClient(exporter.asgi()) as client:
        write_config(path, "beta", reload_endpoint=False)
        response = client.post("/-/reload")
        assert response.status_code == 403
        assert {r["server"] for r in client.get("/sessions").json()} == {"alpha"}


def test_a_reload_can_switch_the_endpoint_off(config_file: Path) -> None:
    exporter = ExporterApp(load_config(config_file))
    with TestClient(exporter.asgi()) as client:
        write_config(config_file, "beta", reload_endpoint=False)
        assert client.post("/-/reload").status_code == 200
        write_config(config_file, "gamma", reload_endpoint=True)
        assert client.post("/-/reload").status_code == 403
        assert {r["server"] for r in client.get("/sessions").json()} == {"beta"}


def test_reload_takes_post_or_put_only(config_file: Path) -> None:
    exporter = ExporterApp(load_config(config_file))
    with TestClient(exporter.asgi()) as client:
        assert client.get("/-/reload").status_code == 405
        assert client.put("/-/reload").status_code == 200


def test_sighup_reloads_a_running_exporter_and_a_broken_file_keeps_the_old(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    write_config(config, "alpha")
    with ExporterProcess(config, tmp_path / "exporter.log") as proc:

        def server_is(name: str) -> bool:
            rows = proc.http.get("/sessions").json()
            return bool(rows) and {r["server"] for r in rows} == {name}

        assert server_is("alpha")
        write_config(config, "beta")
        proc.signal(signal.SIGHUP)
        proc.wait_until(lambda: server_is("beta"), "SIGHUP to switch server_name to beta")
        assert "configuration reloaded" in proc.output()

        config.write_text(BROKEN)
        proc.signal(signal.SIGHUP)
        proc.wait_until(lambda: "reload rejected" in proc.output(), "the rejected reload to be logged")
        assert server_is("beta")
        assert proc.http.get("/metrics").status_code == 200
        assert proc.popen.poll() is None

        # Fixed again: the next SIGHUP applies it.
        write_config(config, "gamma")
        proc.signal(signal.SIGHUP)
        proc.wait_until(lambda: server_is("gamma"), "SIGHUP to switch server_name to gamma")


def test_post_reload_on_a_running_exporter(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    write_config(config, "alpha", reload_endpoint=True)
    with ExporterProcess(config, tmp_path / "exporter.log") as proc:
        write_config(config, "beta", reload_endpoint=True)
        assert proc.http.post("/-/reload").status_code == 200
        assert {r["server"] for r in proc.http.get("/sessions").json()} == {"beta"}
        config.write_text(BROKEN)
        response = proc.http.post("/-/reload")
        assert response.status_code == 400
        assert "YAML syntax error" in response.text
        assert {r["server"] for r in proc.http.get("/sessions").json()} == {"beta"}
        assert "reload rejected" in proc.output()
