"""The sidecar as named templates, used by another chart (examples/consumer-chart)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from chart_helpers import (
    CHART,
    configured_status_paths,
    container,
    exporter_config,
    objects,
    pod_spec,
    render,
    run_helm,
    status_args,
)


def test_consumer_chart_lints(consumer_chart: Path) -> None:
    assert "0 chart(s) failed" in run_helm("lint", "--strict", str(consumer_chart)).stdout


def test_consumer_pod_gets_the_sidecar(consumer_chart: Path) -> None:
    manifests = render(chart=consumer_chart)
    # The dependency renders none of its own resources.
    assert [m["metadata"]["name"] for m in objects(manifests, "Deployment")] == ["vpn"]
    assert not objects(manifests, "ServiceAccount")
    spec = pod_spec(manifests)
    exporter = container(spec, "openvpn-exporter")
    prepare = container(spec, "openvpn-exporter-prepare")
    openvpn = container(spec, "openvpn-udp")
    # Defaults of the dependency apply (hardening, image tag = the exporter's version, not the consumer's).
    assert exporter["securityContext"]["runAsUser"] == 65532
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert exporter["image"] == f"ghcr.io/openvpn-exporter/openvpn-exporter:{app_version}"
    # ...and the consumer's overrides too.
    path, interval = status_args(openvpn)
    assert interval == 5
    config = exporter_config(manifests, spec)
    assert config["server_name"] == "my-openvpn"
    assert configured_status_paths(config) == {path}
    assert path in prepare["args"]
    volume_names = {v["name"] for v in spec["volumes"]}
    assert {m["name"] for m in openvpn["volumeMounts"]} & {
        m["name"] for m in exporter["volumeMounts"]
    } & volume_names == {"openvpn-status"}


def test_consumer_manifests_are_valid(consumer_chart: Path, tmp_path: Path) -> None:
    from test_chart_lint_validate import KUBERNETES_VALIDATE

    text = run_helm("template", "vpn", str(consumer_chart)).stdout
    path = tmp_path / "consumer.yaml"
    path.write_text(text)
    result = subprocess.run([str(KUBERNETES_VALIDATE), "--strict", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_app_version_helper_matches_chart_yaml(helm_bin: str) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    spec = pod_spec(render())
    assert container(spec, "openvpn-exporter")["image"] == f"ghcr.io/openvpn-exporter/openvpn-exporter:{app_version}"
    assert container(spec, "openvpn-udp")["image"] == f"ghcr.io/openvpn-exporter/openvpn:{app_version}"
