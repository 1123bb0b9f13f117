"""Chart and code together: run the exporter exactly as the rendered pod would, against real status files."""

from __future__ import annotations

import csv
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from chart_helpers import (
    CHART,
    REPO,
    Manifest,
    configured_status_paths,
    container,
    exporter_config,
    flag,
    objects,
    one,
    pod_spec,
    render,
    require_or_skip,
)

from tests.support.common import free_port
from tests.support.exporter_process import console_script, stop_process, wait_ready

FIXTURES = REPO / "tests" / "fixtures" / "captured-2.6.14"
# Real OpenVPN 2.6.14 status files (status-version 3), one per protocol.
STATUS_FIXTURES = {
    "udp": FIXTURES / "server-udp-status-v3.log",
    "tcp": FIXTURES / "server-tcp-userpass-status-v3.log",
}
SCENARIOS = {
    "default": [],
    "udp-tcp": [CHART / "ci" / "udp-tcp-loadbalancer-values.yaml"],
    # ServiceMonitor on: its path (/prom) and the hook's second check run against the real exporter too.
    "monitoring": [CHART / "ci" / "monitoring-values.yaml"],
}


def exporter_binary() -> str:
    found = console_script()
    if found is None:
        require_or_skip("the openvpn-exporter console script is not installed (pip install -e .)")
        raise AssertionError("unreachable")
    return found


def metrics_target_port(manifests: list[Manifest], spec: dict[str, Any]) -> int:
    """Follow the metrics Service's targetPort to the container port it names."""
    service = next(
        s
        for s in manifests
        if s["kind"] == "Service" and s["metadata"]["labels"].get("app.kubernetes.io/component") == "metrics"
    )
    [port] = service["spec"]["ports"]
    target = port["targetPort"]
    if isinstance(target, int):
        return target
    [declared] = [p for p in container(spec, "openvpn-exporter")["ports"] if p["name"] == target]
    number: int = declared["containerPort"]
    return number


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def fresh_status(fixture: Path) -> str:
    """The fixture as OpenVPN would write it now: the TIME line carries the current time, as on each refresh."""
    now = int(time.time())
    lines = []
    for line in fixture.read_text().splitlines():
        if line.startswith("TIME\t"):
            line = f"TIME\t{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}\t{now}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def expected_from_fixture(fixture: Path, proto: str) -> tuple[Counter[str], Counter[str], int]:
    """Bytes per client label and the session count, read from the file's own HEADER (TLS-finished rows only)."""
    bytes_in: Counter[str] = Counter()
    bytes_out: Counter[str] = Counter()
    sessions = 0
    header: list[str] = []
    for row in csv.reader(fixture.read_text().splitlines(), delimiter="\t"):
        if row[:2] == ["HEADER", "CLIENT_LIST"]:
            header = row[1:]
        elif row and row[0] == "CLIENT_LIST":
            fields = dict(zip(header, row, strict=True))
            if fields["Common Name"] == "UNDEF":
                continue
            label = f"{fields['Common Name']}_{proto}"
            bytes_in[label] += int(fields["Bytes Received"])
            bytes_out[label] += int(fields["Bytes Sent"])
            sessions += 1
    return bytes_in, bytes_out, sessions


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        stop_process(process)


def metric_samples(text: str) -> dict[str, str]:
    return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines() if line[:1] != "#"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=list(SCENARIOS))
def test_rendered_pod_runs_against_real_status_files(
    scenario: str, tmp_path: Path, helm_bin: str, stopper: list[subprocess.Popen[str]]
) -> None:
    binary = exporter_binary()
    manifests = render(files=SCENARIOS[scenario])
    spec = pod_spec(manifests)
    exporter = container(spec, "openvpn-exporter")
    prepare = container(spec, "openvpn-exporter-prepare")
    config = exporter_config(manifests, spec)
    status_paths = configured_status_paths(config)
    assert status_paths

    # The pod's shared emptyDir becomes a temporary directory; every path in the pod maps into it.
    run_dir = tmp_path / "run-openvpn"
    run_dir.mkdir()

    def local(path: str) -> str:
        return str(run_dir / Path(path).name)

    # 1. The init container, with its rendered arguments.
    assert prepare["command"] == ["openvpn-exporter"]
    prepare_args = [local(a) if a in status_paths else a for a in prepare["args"]]
    result = subprocess.run([binary, *prepare_args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    # 2. OpenVPN writes its status into the pre-created files (in place, as it does), real 2.6.14 output.
    expected_in: Counter[str] = Counter()
    expected_out: Counter[str] = Counter()
    expected_sessions = 0
    for path in status_paths:
        proto = Path(path).stem
        target = Path(local(path))
        # Shared through the pod's fsGroup: owner and group may write, nobody else reads client addresses.
        fs_group = spec["securityContext"]["fsGroup"]
        assert (target.stat().st_gid, stat.S_IMODE(target.stat().st_mode)) == (fs_group, 0o660)
        with target.open("r+") as handle:
            handle.write(fresh_status(STATUS_FIXTURES[proto]))
        assert stat.S_IMODE(target.stat().st_mode) == 0o660
        got_in, got_out, count = expected_from_fixture(STATUS_FIXTURES[proto], proto)
        expected_in += got_in
        expected_out += got_out
        expected_sessions += count

    # 3. exporter.yaml as rendered, status paths moved into the temporary directory.
    local_config = {k: (local(v) if isinstance(v, str) and v in status_paths else v) for k, v in config.items()}
    config_file = tmp_path / "exporter.yaml"
    config_file.write_text(yaml.safe_dump(local_config))

    # 4. The exporter with exactly the rendered arguments, but for the config path and the listen address:
    # the port is the one the metrics Service targets (a free one if that is taken here), bound to loopback.
    port = metrics_target_port(manifests, spec)
    listen = flag(exporter["args"], "--web.listen-address")
    assert listen == f":{port}"
    if not port_is_free(port):
        port = free_port()
    args: list[str] = []
    for arg in exporter["args"]:
        if arg.startswith("--config.file="):
            arg = f"--config.file={config_file}"
        elif arg.startswith("--web.listen-address="):
            arg = f"--web.listen-address=127.0.0.1:{port}"
        args.append(arg)
    assert exporter["command"] == ["openvpn-exporter"]
    process = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopper.append(process)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, process, output=lambda: process.communicate()[1])

    # 5. Scrape the rendered telemetry path.
    response = httpx.get(f"{base}{flag(exporter['args'], '--web.telemetry-path')}", timeout=5)
    assert response.status_code == 200
    samples = metric_samples(response.text)
    assert samples['probe_success{version="2.6.14"}'] == "1"
    assert samples['ovpn_info{product="OpenVPN",version="2.6.14"}'] == "1"
    assert samples["ovpn_sessions_total"] == str(expected_sessions)
    for label, value in expected_in.items():
        assert samples[f'ovpn_bytes_in_total{{client="{label}"}}'] == str(value)
    for label, value in expected_out.items():
        assert samples[f'ovpn_bytes_out_total{{client="{label}"}}'] == str(value)
    assert len([k for k in samples if k.startswith("ovpn_bytes_in_total")]) == len(expected_in)
    monitors = objects(manifests, "ServiceMonitor")
    if monitors:
        # What Prometheus scrapes: every OpenVPN series above plus the series the alerts and dashboard read.
        [endpoint] = monitors[0]["spec"]["endpoints"]
        scraped = httpx.get(f"{base}{endpoint['path']}", timeout=5)
        assert scraped.status_code == 200
        scraped_samples = metric_samples(scraped.text)
        assert {k: scraped_samples.get(k) for k in samples} == samples
        for status_path in status_paths:
            source = Path(status_path).stem
            assert float(scraped_samples[f'openvpn_exporter_source_up{{source="{source}"}}']) == 1

    # 6. The chart's `helm test` script accepts this exporter's answer.
    test_pod = one(manifests, "Pod")
    [check] = test_pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in check["env"] if "value" in e}
    env["METRICS_URL"] = base + urlsplit(env["METRICS_URL"]).path
    if "SCRAPE_URL" in env:
        env["SCRAPE_URL"] = base + urlsplit(env["SCRAPE_URL"]).path
    assert ("SCRAPE_URL" in env) == bool(monitors)
    env["TIMEOUT_SECONDS"] = "10"
    assert check["command"][:2] == ["python3", "-c"]
    hook = subprocess.run(
        [sys.executable, "-c", check["command"][2]],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert hook.returncode == 0, hook.stdout + hook.stderr
    assert hook.stdout.startswith(f"OK {base}/metrics")
    if monitors:
        assert f"OK {base}/prom:" in hook.stdout
        # The second check has teeth: a scrape path without the exporter's own series fails the hook.
        wrong = {**env, "SCRAPE_URL": env["METRICS_URL"], "TIMEOUT_SECONDS": "0"}
        failed = subprocess.run(
            [sys.executable, "-c", check["command"][2]],
            env={**os.environ, **wrong},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "missing ['# TYPE openvpn_exporter_source_up gauge']" in failed.stderr

    # 7. SIGTERM stops it cleanly, as kubelet does.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0
