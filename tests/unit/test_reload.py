"""Reload: SIGHUP and the opt-in `POST /-/reload` re-read exporter.yaml; a bad file keeps the old config."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import bcrypt
import httpx
import pytest
from starlette.testclient import TestClient

from exporter.app import ExporterApp
from exporter.config import load_config
from tests.support.common import CAPTURED, FIXTURES
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


# ------------------------------------------------------------------------------ hostile configs by reload

BAD_CONFIGS = sorted((FIXTURES / "configs").glob("bad-*.yaml"))


class HealthWatch:
    """Polls /-/healthy from a thread with a 2 s timeout while a test runs; what failed or was slow."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.slowest = 0.0
        self.failures: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    if client.get("/-/healthy").status_code != 200:
                        self.failures.append("status")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.checks += 1
                self._stop.wait(0.05)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_every_hostile_config_by_sighup_and_post_keeps_the_old_one_serving(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    write_config(config, "alpha", reload_endpoint=True)
    huge = "ovpnudpstatus: /x\n" + "# padding\n" * 500_000  # 5 MB: refused by its size, off the loop
    # Just under the size cap, and slow to read: about a second of parsing before the value cap refuses it.
    values = "ovpnudpstatus: /x\nmetrics: {include: [" + "a, " * 330_000 + "a]}\n"
    bad_texts = [(p.stem, p.read_bytes()) for p in BAD_CONFIGS]
    bad_texts += [("five-megabytes", huge.encode()), ("a-megabyte-of-values", values.encode())]
    with ExporterProcess(config, tmp_path / "exporter.log") as proc, HealthWatch(proc.url) as health:
        for name, text in bad_texts:
            config.write_bytes(text)
            rejected = proc.output().count("reload rejected")
            proc.signal(signal.SIGHUP)
            proc.wait_until(lambda r=rejected: proc.output().count("reload rejected") > r, f"{name}: rejected")
            response = proc.http.post("/-/reload")
            assert response.status_code == 400, name
            assert len(response.text) < 1000 and "\n" not in response.text.strip(), name
            assert proc.http.get("/metrics").status_code == 200, name
            sessions = proc.http.get("/sessions")
            assert sessions.status_code == 200, name
            assert {r["server"] for r in sessions.json()} == {"alpha"}, name
        assert proc.popen.poll() is None
    assert health.checks > 0
    assert health.failures == []
    assert health.slowest < 2.0
    for line in proc.output().splitlines():
        if "reload rejected" in line:
            assert len(line) < 1100, line[:200]
    assert "Traceback" not in proc.output()


# -------------------------------------------------------------------------- a ConfigMap updated by kubelet


def kubelet_layout(root: Path, text: str, stamp: str) -> None:
    """What kubelet does to a ConfigMap volume: the files in a new timestamped directory, then a new
    `..data` symlink renamed over the old one (atomic); the visible names point through `..data`."""
    version = root / f"..2026_12_03_08_00_{stamp}.000000001"
    version.mkdir()
    (version / "exporter.yaml").write_text(text)
    fresh = root / "..data_tmp"
    fresh.symlink_to(version.name)
    fresh.rename(root / "..data")
    if not (root / "exporter.yaml").is_symlink():
        (root / "exporter.yaml").symlink_to("..data/exporter.yaml")


def config_text(server_name: str, extra: str = "") -> str:
    return f"server_name: {server_name}\nstale_after: 0\novpnudpstatus: {STATUS}\nconfig_check_interval: 1s\n{extra}"


def test_a_configmap_update_is_applied_in_place_and_a_bad_one_keeps_the_old(tmp_path: Path) -> None:
    volume = tmp_path / "config"
    volume.mkdir()
    kubelet_layout(volume, config_text("alpha"), "01")
    with ExporterProcess(volume / "exporter.yaml", tmp_path / "exporter.log") as proc:
        pid = proc.pid

        def server_is(name: str) -> bool:
            rows = proc.http.get("/sessions").json()
            return bool(rows) and {r["server"] for r in rows} == {name}

        assert server_is("alpha")
        kubelet_layout(volume, config_text("beta"), "02")
        proc.wait_until(lambda: server_is("beta"), "the swapped ConfigMap to be applied", timeout=30)

        kubelet_layout(volume, config_text("gamma", "surprise: 1\n"), "03")
        proc.wait_until(lambda: "reload rejected" in proc.output(), "the bad update to be rejected", timeout=30)
        time.sleep(2.5)  # two more polls: the bad version is logged once, not at every poll
        assert proc.output().count("reload rejected") == 1
        assert "surprise: unknown key" in proc.output()
        assert server_is("beta")
        assert proc.http.get("/metrics").status_code == 200

        # A plain edit of the file in place is noticed too.
        version = (volume / "..data").resolve()
        (version / "exporter.yaml").write_text(config_text("delta"))
        proc.wait_until(lambda: server_is("delta"), "the edited file to be applied", timeout=30)
        assert proc.pid == pid
        assert proc.popen.poll() is None


# --------------------------------------------------------------------------------- the web config, too


def test_basic_auth_users_are_replaced_on_reload(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    write_config(config, "alpha")
    web = tmp_path / "web.yml"
    old, new = (bcrypt.hashpw(p, bcrypt.gensalt(4)).decode() for p in (b"old-secret", b"new-secret"))
    web.write_text(f"basic_auth_users:\n  prom: '{old}'\n")
    with ExporterProcess(config, tmp_path / "exporter.log", extra_args=[f"--web.config.file={web}"]) as proc:
        assert proc.http.get("/metrics", auth=("prom", "old-secret")).status_code == 200
        web.write_text(f"basic_auth_users:\n  prom: '{new}'\n")
        proc.signal(signal.SIGHUP)
        proc.wait_until(lambda: "configuration reloaded" in proc.output(), "the reload")
        # The old password was remembered as good: the reload forgets it.
        assert proc.http.get("/metrics", auth=("prom", "old-secret")).status_code == 401
        assert proc.http.get("/metrics", auth=("prom", "new-secret")).status_code == 200
        # A broken web config is rejected like a broken exporter.yaml; the users stay.
        web.write_text("basic_auth_users:\n  prom: '$2b$99$" + new[7:] + "'\n")
        proc.signal(signal.SIGHUP)
        proc.wait_until(lambda: "the bcrypt cost is 99" in proc.output(), "the rejected reload")
        assert proc.http.get("/metrics", auth=("prom", "new-secret")).status_code == 200


def test_a_burst_of_sighups_is_coalesced_and_the_last_file_applies(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    write_config(config, "alpha")
    with ExporterProcess(config, tmp_path / "exporter.log") as proc:
        write_config(config, "omega")
        for _ in range(300):
            proc.signal(signal.SIGHUP)
        proc.wait_until(
            lambda: {r["server"] for r in proc.http.get("/sessions").json()} == {"omega"}, "the burst to apply omega"
        )
        threads = int(next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                           if line.startswith("Threads:")).split()[1])  # fmt: skip
        assert threads < 60  # not a thread per signal
        assert proc.output().count("configuration reloaded") < 300
        assert proc.http.get("/-/healthy").status_code == 200
