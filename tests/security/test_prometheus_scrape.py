"""A real Prometheus (Debian's package) scrapes the exporter over TLS with basic auth."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx

from security.conftest import PASSWORD, USER
from security.harness import PKI, client_context, start_exporter
from tests.support.common import LOOPBACK, free_port, tool


def prometheus_binary() -> str:
    return tool("prometheus", "apt-get install prometheus", Path("/usr/bin/prometheus"))


def test_prometheus_scrapes_over_tls_with_basic_auth(
    tmp_path: Path, pki: PKI, password_hash: str, status_config: Path
) -> None:
    binary = prometheus_binary()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"basic_auth_users:\n  {USER}: '{password_hash}'\n"
    )
    exporter = start_exporter(tmp_path, status_config, web_config=web, ready_client={"verify": client_context(pki)})
    target = f"{LOOPBACK}:{exporter.port}"
    (tmp_path / "password").write_text(PASSWORD)

    def job(name: str, password_file: Path) -> dict[str, object]:
        return {
            "job_name": name,
            "scheme": "https",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "metrics_path": "/metrics",
            "tls_config": {"ca_file": str(pki.ca)},
            "basic_auth": {"username": USER, "password_file": str(password_file)},
            "static_configs": [{"targets": [target]}],
        }

    (tmp_path / "wrong").write_text("not the password")
    jobs = [job("openvpn", tmp_path / "password"), job("intruder", tmp_path / "wrong")]
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://{LOOPBACK}:{port}/api/v1"
    try:
        deadline = time.monotonic() + 45
        results: dict[str, str] = {}
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    up = client.get(f"{api}/query", params={"query": "up"}).json()["data"]["result"]
                    results = {r["metric"]["job"]: r["value"][1] for r in up}
                except (httpx.HTTPError, KeyError, ValueError):
                    results = {}
                if results.get("openvpn") == "1" and "intruder" in results:
                    break
                time.sleep(0.5)
            assert results.get("openvpn") == "1", results
            assert results.get("intruder") == "0", results
            sessions = client.get(f"{api}/query", params={"query": 'ovpn_bytes_in_total{job="openvpn"}'}).json()
            assert [r["metric"]["client"] for r in sessions["data"]["result"]] == ["alice_udp"]
            targets = client.get(f"{api}/targets").json()["data"]["activeTargets"]
            intruder = next(t for t in targets if t["labels"]["job"] == "intruder")
            assert "401" in intruder["lastError"]
        print(f"\nprometheus scraped {target} over TLS with basic auth: up={results}")
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        log.close()
        exporter.stop()
