"""A real Prometheus (Debian's package) scrapes the exporter; promtool parses and lints what it serves."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.support.common import free_port, tool, wait_for

from .conftest import Deployment

pytestmark = pytest.mark.integration

# promtool exits 3 for lint findings. These two come from the contract's own names, kept for compatibility
# with the original exporter's dashboards and alerts; any other finding is a defect.
ALLOWED_LINT = [
    re.compile(r'^ovpn_info counter metrics should have "_total" suffix$'),
    re.compile(r'^ovpn_sessions_total non-counter metrics should not have "_total" suffix$'),
]


def _tool(name: str) -> str:
    return tool(name, "apt-get install prometheus")


@pytest.fixture
def prometheus(deployment: Deployment) -> Iterator[str]:
    """Prometheus on loopback, scraping the lab's exporter every second, with its own storage."""
    binary = _tool("prometheus")
    workdir = deployment.lab.root / f"prometheus-{free_port()}"
    workdir.mkdir()
    target = deployment.exporter.base.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "openvpn", "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                return httpx.get(base + "/-/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 30, "prometheus to be ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _query(base: str, expr: str) -> list[dict[str, object]]:
    resp = httpx.get(base + "/api/v1/query", params={"query": expr}, timeout=5)
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_the_exporter(deployment: Deployment, prometheus: str) -> None:
    want = deployment.expected_sessions()
    state: dict[str, object] = {}

    def scraped() -> bool:
        up = _query(prometheus, 'up{job="openvpn"}')
        sessions = _query(prometheus, 'ovpn_sessions_total{job="openvpn"}')
        state.update(up=up, sessions=sessions)
        return (
            len(up) == 1
            and up[0]["value"][1] == "1"  # type: ignore[index]
            and len(sessions) == 1
            and sessions[0]["value"][1] == str(want)  # type: ignore[index]
        )

    try:
        wait_for(scraped, 30, "Prometheus to report up == 1 and the lab's session count", interval=0.5)
    except TimeoutError:
        targets = httpx.get(prometheus + "/api/v1/targets", timeout=5).json()
        raise AssertionError(f"want {want} sessions; got {state}; targets: {targets}") from None
    # Prometheus stored one series per client label, as the exporter served them.
    series = _query(prometheus, 'ovpn_bytes_in_total{job="openvpn"}')
    labels = sorted(str(s["metric"]["client"]) for s in series)  # type: ignore[index]
    assert labels == sorted(deployment.expected_labels())
    probe = _query(prometheus, 'probe_success{job="openvpn"}')
    assert [(s["metric"]["version"], s["value"][1]) for s in probe] == [  # type: ignore[index]
        (deployment.expected_version(), "1")
    ]


@pytest.mark.parametrize("path", ["/metrics", "/prom"])
def test_promtool_check_metrics(deployment: Deployment, path: str) -> None:
    promtool = _tool("promtool")
    body = deployment.exporter.get(path)
    assert body.status_code == 200
    res = subprocess.run(
        [promtool, "check", "metrics"], input=body.content, capture_output=True, timeout=60, check=False
    )
    out = (res.stdout + res.stderr).decode(errors="replace")
    findings = [line.strip() for line in out.splitlines() if line.strip()]
    if res.returncode == 0:
        return
    assert res.returncode == 3, f"promtool could not parse {path} (exit {res.returncode}):\n{out}"
    unexpected = [f for f in findings if not any(p.match(f) for p in ALLOWED_LINT)]
    assert unexpected == [], f"promtool lint findings on {path} beyond the contract's own names:\n{out}"
