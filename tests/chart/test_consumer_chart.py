"""The sidecar as named templates, used by another chart (examples/consumer-chart)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    CHART,
    configured_status_paths,
    container,
    exporter_config,
    flag,
    objects,
    one,
    pod_spec,
    render,
    run_helm,
    status_args,
    template_text,
)


def test_consumer_chart_lints(consumer_chart: Path) -> None:
    assert "0 chart(s) failed" in run_helm("lint", "--strict", str(consumer_chart)).stdout


def test_consumer_pod_gets_the_sidecar(consumer_chart: Path) -> None:
    manifests = render(chart=consumer_chart)
    # The dependency renders none of its workload, only the monitoring of the consumer's pods.
    assert [m["metadata"]["name"] for m in objects(manifests, "Deployment")] == ["vpn"]
    assert not objects(manifests, "ServiceAccount")
    assert sorted(m["kind"] for m in manifests if m["apiVersion"].startswith("monitoring.coreos.com/")) == [
        "PodMonitor",
        "PrometheusRule",
    ]
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = one(manifests, "PodMonitor")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert any(m["metadata"]["name"].endswith("-dashboard") for m in objects(manifests, "ConfigMap"))
    spec = pod_spec(manifests)
    exporter = container(spec, "openvpn-exporter")
    prepare = container(spec, "openvpn-exporter-prepare")
    openvpn = container(spec, "openvpn-udp")
    # Defaults of the dependency apply (hardening, image tag = the exporter's version, not the consumer's).
    assert exporter["securityContext"]["runAsUser"] == 65532
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert exporter["image"] == f"ghcr.io/openvpn-exporter/openvpn-exporter:{app_version}"
    # The consumer's OpenVPN: the node's tun device, NET_ADMIN only, the fsGroup the status files share.
    assert any(m["mountPath"] == "/dev/net/tun" for m in openvpn["volumeMounts"])
    assert {"path": "/dev/net/tun", "type": "CharDevice"} in [v.get("hostPath") for v in spec["volumes"]]
    assert openvpn["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert spec["securityContext"]["fsGroup"] == 65532
    assert flag(prepare["args"], "--group") == "65532"
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


TLS_AND_AUTH = {
    "openvpn-exporter": {
        "exporter": {
            "webConfig": {
                "tls": {"enabled": True, "secretName": "exporter-tls"},
                "basicAuthUsers": {"prometheus": "$2b$10$TtGdhgY.6HKvVNsj977EV.AO17NoSb1m1cvoemuLfnpYM54k9KYsG"},
            }
        },
        "podMonitor": {"basicAuth": {"username": {"name": "scrape", "key": "user"}}},
    }
}


@pytest.mark.parametrize("values", [None, TLS_AND_AUTH], ids=["plain", "tls-basic-auth"])
def test_consumer_manifests_are_valid(consumer_chart: Path, tmp_path: Path, values: dict[str, Any] | None) -> None:
    from test_chart_lint_validate import KUBERNETES_VALIDATE, validate_operator_object

    text = template_text(values, chart=consumer_chart).stdout
    path = tmp_path / "consumer.yaml"
    path.write_text(text)
    result = subprocess.run([str(KUBERNETES_VALIDATE), "--strict", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    manifests = [d for d in yaml.safe_load_all(text) if d]
    for manifest in manifests:
        if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            validate_operator_object(manifest)
    if values:
        # The web config Secret is rendered by the consumer, and the pod mounts it and the TLS Secret.
        spec = pod_spec(manifests)
        secret = one(manifests, "Secret")
        assert "basic_auth_users" in secret["stringData"]["web-config.yml"]
        assert "tls_server_config" in secret["stringData"]["web-config.yml"]
        mounted = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        assert {secret["metadata"]["name"], "exporter-tls"} <= mounted
        assert one(manifests, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["scheme"] == "https"


def test_consumer_web_config_mistakes_name_the_value(consumer_chart: Path) -> None:
    no_tls_secret = {"openvpn-exporter": {"exporter": {"webConfig": {"tls": {"enabled": True}}}}}
    result = template_text(no_tls_secret, chart=consumer_chart, check=False)
    assert result.returncode != 0
    assert "exporter.webConfig.tls.secretName" in result.stderr


def test_app_version_helper_matches_chart_yaml(helm_bin: str) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    spec = pod_spec(render())
    assert container(spec, "openvpn-exporter")["image"] == f"ghcr.io/openvpn-exporter/openvpn-exporter:{app_version}"
    assert container(spec, "openvpn-udp")["image"] == f"ghcr.io/openvpn-exporter/openvpn:{app_version}"
