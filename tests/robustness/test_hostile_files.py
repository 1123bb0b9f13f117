"""Status files a broken or hostile host can present, against the real exporter process; and the
start-up failures (port in use, bad listen address, unreadable config): one line, non-zero exit."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from security.harness import status_v3

from tests.support.common import FIXTURES, LOOPBACK, free_port
from tests.support.common import missing as require_or_skip
from tests.support.exporter_process import exporter_command


def without_file_privileges() -> list[str]:
    """A command prefix under which mode bits apply: root keeps its uid but loses the capabilities that
    bypass them (the container's non-root user is in the same position)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        require_or_skip("running as root without setpriv: cannot make a file unreadable")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


def scrape(client: httpx.Client, url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    started = time.monotonic()
    response = client.get(url)
    assert response.status_code == 200
    assert time.monotonic() - started < 2, "a hostile file made the scrape slow"
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float | None:
    return metrics.get(name, {}).get(tuple(sorted(labels.items())))


def test_hostile_status_files(tmp_path: Path) -> None:
    files = tmp_path / "status"
    files.mkdir()
    good = files / "good.status"
    good.write_text(status_v3([("alice", "UNDEF", 10, 20)]))
    (files / "huge.status").write_text(status_v3([(f"c{i}", "UNDEF", i, i) for i in range(400)]))
    (files / "binary.status").write_bytes(os.urandom(3000))
    (files / "nul.status").write_bytes(good.read_bytes().replace(b"alice", b"al\x00ce"))
    (files / "empty.status").write_bytes(b"")
    (files / "dir.status").mkdir()
    os.mkfifo(files / "fifo.status")
    unreadable = files / "unreadable.status"
    unreadable.write_text(status_v3([("bob", "UNDEF", 1, 1)]))
    unreadable.chmod(0)
    (files / "torn.status").write_bytes((FIXTURES / "captured-2.6.14" / "torn-read-v3-no-END.log").read_bytes())
    restart = files / "restart.status"
    restart.write_text(status_v3([("carol", "UNDEF", 5, 5)]))
    names = ["good", "huge", "binary", "nul", "empty", "dir", "fifo", "unreadable", "torn", "restart", "missing"]
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "stale_after: 0\nmax_file_bytes: 16384\nsources:\n"
        + "".join(f"  - name: {n}\n    path: {files / (n + '.status')}\n    protocol: udp\n" for n in names)
    )
    prefix = without_file_privileges()
    port = free_port()
    err = (tmp_path / "hostile.stderr").open("wb")
    proc = subprocess.Popen(
        [*prefix, *exporter_command(), f"--web.listen-address={LOOPBACK}:{port}", f"--config.file={config}"],
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        with httpx.Client(timeout=5) as client:
            deadline = time.monotonic() + 15
            while True:
                try:
                    if client.get(url + "/-/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.05)
            for _ in range(3):
                prom = scrape(client, url + "/prom")
            expected_reasons = {
                "huge": "too_large",
                "binary": "malformed",
                "nul": "malformed",
                "empty": "empty",
                "dir": "not_regular",
                "fifo": "not_regular",
                "unreadable": "permission",
                "torn": "torn",
                "missing": "missing",
            }
            for name in names:
                up = value(prom, "openvpn_exporter_source_up", source=name)
                assert up == (1 if name in ("good", "restart") else 0), (name, up)
            errors = {
                dict(labels)["source"]: dict(labels)["reason"] for labels in prom["openvpn_exporter_read_errors_total"]
            }
            for name, reason in expected_reasons.items():
                if name == "binary" and errors.get(name) == "format":
                    continue  # random bytes that do not even start like a status file
                assert errors.get(name) == reason, (name, errors.get(name))
                assert (value(prom, "openvpn_exporter_read_errors_total", source=name, reason=errors[name]) or 0) >= 1
            metrics = scrape(client, url + "/metrics")
            assert value(metrics, "probe_success", version="2.6.14") == 1
            assert {dict(k)["client"] for k in metrics["ovpn_bytes_in_total"]} == {"alice_udp", "carol_udp"}

            # OpenVPN restarts: the file disappears (source down, its sessions no longer counted), then
            # comes back with new content (up again, new sessions).
            restart.unlink()
            prom = scrape(client, url + "/prom")
            assert value(prom, "openvpn_exporter_source_up", source="restart") == 0
            metrics = scrape(client, url + "/metrics")
            assert {dict(k)["client"] for k in metrics["ovpn_bytes_in_total"]} == {"alice_udp"}
            restart.write_text(status_v3([("dave", "UNDEF", 7, 7)]))
            metrics = scrape(client, url + "/metrics")
            assert {dict(k)["client"] for k in metrics["ovpn_bytes_in_total"]} == {"alice_udp", "dave_udp"}

            # A torn rewrite of a good file: the last complete snapshot keeps being served, and counted.
            text = good.read_text()
            good.write_text(text[: len(text) // 2])
            metrics = scrape(client, url + "/metrics")
            assert value(metrics, "ovpn_bytes_in_total", client="alice_udp") == 10
            prom = scrape(client, url + "/prom")
            assert value(prom, "openvpn_exporter_source_up", source="good") == 1
            assert (value(prom, "openvpn_exporter_read_errors_total", source="good", reason="torn") or 0) >= 1
            # Garbage where a good file was, then the good file again.
            good.write_bytes(os.urandom(500))
            scrape(client, url + "/metrics")
            good.write_text(status_v3([("alice", "UNDEF", 11, 20)]))
            metrics = scrape(client, url + "/metrics")
            assert value(metrics, "ovpn_bytes_in_total", client="alice_udp") == 11
            assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(5)
        err.close()
    log = (tmp_path / "hostile.stderr").read_text()
    assert "Traceback" not in log
    assert "permission denied" in log


# ------------------------------------------------------------------------------------ start-up failures


def run(args: list[str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), *exporter_command(), *args], capture_output=True, text=True, timeout=20, check=False
    )


def one_line_failure(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    status = tmp_path / "udp.status"
    status.write_text(status_v3([]))
    path = tmp_path / "exporter.yaml"
    path.write_text(f"ovpnudpstatus: {status}\n")
    return path


def test_port_in_use(config: Path) -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run([f"--config.file={config}", f"--web.listen-address={LOOPBACK}:{port}"])
    one_line_failure(result, "address already in use")
    assert str(port) in result.stderr


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("9234", "has no port"),
        ("localhost:http", "the port must be a number"),
        ("127.0.0.1:70000", "the port must be a number"),
        ("::1:9234", "put an IPv6 address in brackets"),
        ("no-such-host.invalid:9234", "cannot resolve host"),
        ("192.0.2.1:9234", "this host has no such address"),
    ],
)
def test_malformed_listen_address(config: Path, address: str, fragment: str) -> None:
    one_line_failure(run([f"--config.file={config}", f"--web.listen-address={address}"]), fragment)


def test_unreadable_config(config: Path, tmp_path: Path) -> None:
    config.chmod(0)
    one_line_failure(
        run([f"--config.file={config}", "--web.listen-address=127.0.0.1:0"], without_file_privileges()),
        f"{config}: permission denied",
    )
    one_line_failure(run([f"--config.file={tmp_path}"]), "is a directory")
    one_line_failure(run([f"--config.file={tmp_path / 'none.yaml'}"]), "config file not found")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    one_line_failure(run([f"--config.file={tmp_path / 'binary.yaml'}"]), "not UTF-8")
