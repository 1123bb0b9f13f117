"""The conventions of the prometheus-community exporter charts: NetworkPolicy, PodDisruptionBudget, monitor
options, per-alert overrides, registry mirror, extension points, helm test scheduling, chart metadata.
chart/ci/anchors-values.yaml turns them all on for the lint, kubernetes-validate and Operator-model checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from chart_helpers import (
    CHART,
    REPO,
    all_containers,
    container,
    objects,
    one,
    openvpn_containers,
    pod_spec,
    render,
    render_error,
    run_helm,
    template_text,
)

ANCHORS = CHART / "ci" / "anchors-values.yaml"
TEST_POD = {"app.kubernetes.io/name": "openvpn-exporter", "app.kubernetes.io/instance": "vpn"}


def test_network_policy_opens_vpn_ports_and_limits_metrics(helm_bin: str) -> None:
    values = {"openvpn": {"tcp": {"enabled": True, "port": 443}}, "networkPolicy": {"enabled": True}}
    manifests = render(values)
    policy = one(manifests, "NetworkPolicy")
    assert (
        policy["spec"]["podSelector"]["matchLabels"] == one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    vpn, metrics = policy["spec"]["ingress"]
    assert vpn["ports"] == [{"port": 1194, "protocol": "UDP"}, {"port": 443, "protocol": "TCP"}]
    assert "from" not in vpn  # clients come from anywhere
    assert metrics["ports"] == [{"port": 9234, "protocol": "TCP"}]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {"podSelector": {"matchLabels": {**TEST_POD, "app.kubernetes.io/component": "test"}}},
    ]
    # The helm test pod is the one that peer admits.
    test_pod = one(manifests, "Pod")
    assert {**TEST_POD, "app.kubernetes.io/component": "test"}.items() <= test_pod["metadata"]["labels"].items()
    # Namespace and pod selector together form one peer (AND), as blackbox's allowMonitoringNamespace.
    scoped = render(
        {
            "networkPolicy": {
                "enabled": True,
                "metrics": {"podSelector": {"matchLabels": {"app": "prometheus"}}},
                "vpn": {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]},
            },
            "tests": {"enabled": False},
        }
    )
    vpn, metrics = one(scoped, "NetworkPolicy")["spec"]["ingress"]
    assert vpn["from"] == [{"ipBlock": {"cidr": "192.0.2.0/24"}}]
    assert metrics["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app": "prometheus"}},
        }
    ]
    # No peer at all would open the port to everyone: refused.
    no_peer = {"networkPolicy": {"enabled": True, "metrics": {"namespaceSelector": None}}, "tests": {"enabled": False}}
    assert "networkPolicy.metrics" in render_error(no_peer)
    assert not objects(render(), "NetworkPolicy")


def test_pod_disruption_budget(helm_bin: str) -> None:
    assert not objects(render(), "PodDisruptionBudget")
    manifests = render({"podDisruptionBudget": {"enabled": True}})
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"] == {
        "maxUnavailable": 0,
        "selector": {"matchLabels": one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]},
    }
    minimum = one(
        render({"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": None}}),
        "PodDisruptionBudget",
    )
    assert "maxUnavailable" not in minimum["spec"]
    assert minimum["spec"]["minAvailable"] == 1


def test_monitor_fields_of_node_exporter(helm_bin: str) -> None:
    manifests = render(files=[ANCHORS])
    service_monitor = one(manifests, "ServiceMonitor")["spec"]
    assert service_monitor["attachMetadata"] == {"node": True}
    limits = {
        k: service_monitor[k]
        for k in ("sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit")
    }
    assert limits == {
        "sampleLimit": 5000,
        "targetLimit": 10,
        "labelLimit": 64,
        "labelNameLengthLimit": 128,
        "labelValueLengthLimit": 1024,
    }
    assert service_monitor["endpoints"][0]["authorization"]["credentials"] == {"name": "scrape-token", "key": "token"}
    pod_monitor = one(manifests, "PodMonitor")["spec"]
    assert pod_monitor["attachMetadata"] == {"node": True}
    # The PodMonitor selects this release's pod and its exporter port.
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_monitor["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = [p["name"] for c in all_containers(pod_spec(manifests)) for p in c.get("ports", [])]
    assert pod_monitor["podMetricsEndpoints"][0]["port"] in ports
    assert pod_monitor["namespaceSelector"] == {"matchNames": ["network"]}


def test_per_alert_overrides_and_runbooks(helm_bin: str) -> None:
    rules = {r["alert"]: r for r in one(render(files=[ANCHORS]), "PrometheusRule")["spec"]["groups"][0]["rules"]}
    down = rules["OpenVPNDown"]
    assert down["for"] == "10m"
    assert down["labels"] == {"severity": "page", "tier": "edge", "team": "network"}
    assert down["annotations"]["runbook_url"] == "https://runbooks.example.org/openvpn/openvpndown"
    assert rules["OpenVPNSessionsDropped"]["annotations"]["runbook_url"] == "https://wiki.example.org/vpn-sessions"
    assert rules["OpenVPNStatusStale"]["labels"] == {"severity": "warning", "team": "network"}
    assert rules["OpenVPNStatusStale"]["for"] == "5m"
    # An unknown alert name is a schema error, not a silently ignored override.
    result = template_text(
        {"prometheusRule": {"enabled": True, "customRules": {"OpenVPNDwn": {"for": "1m"}}}}, check=False
    )
    assert result.returncode != 0
    assert "OpenVPNDwn" in result.stderr or "OpenVPNDown" in result.stderr


def test_registry_mirror_and_extension_points(helm_bin: str) -> None:
    manifests = render(files=[ANCHORS])
    spec = pod_spec(manifests)
    chart_images = [c["image"] for c in all_containers(spec) if not c["image"].startswith("busybox")]
    assert chart_images and all(i.startswith("mirror.example.org/openvpn-exporter/") for i in chart_images)
    assert spec["initContainers"][0]["name"] == "wait-for-config"
    assert "log-shipper" in [c["name"] for c in spec["containers"]]
    exporter = container(spec, "openvpn-exporter")
    assert exporter["envFrom"] == [{"configMapRef": {"name": "exporter-env"}}]
    assert {"name": "scratch", "mountPath": "/scratch", "readOnly": True} in exporter["volumeMounts"]
    assert exporter["startupProbe"]["httpGet"]["path"] == "/-/healthy"
    [openvpn] = openvpn_containers(spec)
    assert openvpn["envFrom"] == [{"secretRef": {"name": "openvpn-env"}}]
    assert openvpn["startupProbe"]["exec"]["command"][0] == "test"
    metrics = one(manifests, "Service", "vpn-openvpn-exporter-metrics")
    assert metrics["spec"]["ipFamilyPolicy"] == "PreferDualStack"
    # extraManifests go through tpl, as objects or as strings.
    names = {m["metadata"]["name"] for m in objects(manifests, "ConfigMap")}
    assert {"vpn-exporter-env", "vpn-openvpn-notes"} <= names
    notes = one(manifests, "ConfigMap", "vpn-openvpn-notes")
    assert notes["data"] == {"release": "vpn"}


def test_namespace_override(helm_bin: str) -> None:
    values: dict[str, Any] = {
        "namespaceOverride": "vpn-system",
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
    }
    manifests = render(values)
    assert {m["metadata"]["namespace"] for m in manifests} == {"vpn-system"}
    assert one(manifests, "ServiceMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["vpn-system"]}
    env = {e["name"]: e.get("value") for e in one(manifests, "Pod")["spec"]["containers"][0]["env"]}
    assert ".vpn-system.svc:" in env["METRICS_URL"]


def test_native_sidecar_needs_kubernetes_1_29(helm_bin: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"exporter": {"nativeSidecar": True}}))
    args = ["template", "vpn", str(CHART), "-f", str(values), "--kube-version"]
    old = run_helm(*args, "1.28.0", check=False)
    assert old.returncode != 0
    assert "exporter.nativeSidecar needs Kubernetes 1.29" in old.stderr
    assert run_helm(*args, "1.29.0").returncode == 0


def test_dashboard_uid_is_per_release(helm_bin: str) -> None:
    def uid(values: dict[str, Any], release: str = "vpn") -> str:
        sets = [f"--set={k}={v}" for k, v in {"grafanaDashboard.enabled": "true", **values}.items()]
        manifests = [d for d in yaml.safe_load_all(run_helm("template", release, str(CHART), *sets).stdout) if d]
        dashboard = one(manifests, "ConfigMap", f"{release}-openvpn-exporter-dashboard")
        found: str = json.loads(dashboard["data"]["openvpn-exporter.json"])["uid"]
        return found

    assert uid({}) != uid({}, release="vpn2")
    assert uid({}) == uid({})
    assert uid({"grafanaDashboard.uid": "my-vpn"}) == "my-vpn"


def test_helm_test_pod_is_scheduled_and_pulled_like_the_release(helm_bin: str) -> None:
    hardened = render(files=[CHART / "ci" / "hardened-custom-values.yaml"])
    pod = one(hardened, "Pod")["spec"]
    deployment = pod_spec(hardened)
    assert pod["imagePullSecrets"] == deployment["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["nodeSelector"] == deployment["nodeSelector"]
    assert pod["tolerations"] == deployment["tolerations"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["containers"][0]["image"] == container(deployment, "openvpn-exporter")["image"]


def test_chart_metadata_and_license() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for key in ("home", "sources", "maintainers", "icon"):
        assert meta.get(key), key
    assert meta["icon"].endswith("/chart/icon.svg") and (CHART / "icon.svg").is_file()
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    assert meta["annotations"]["artifacthub.io/license"] == "Apache-2.0"


def test_lint_strict_prints_no_recommendation(helm_bin: str) -> None:
    for files in ([], [ANCHORS]):
        args = [a for f in files for a in ("-f", str(f))]
        result = run_helm("lint", "--strict", str(CHART), *args)
        assert "[INFO]" not in result.stdout and "[WARNING]" not in result.stdout, result.stdout
