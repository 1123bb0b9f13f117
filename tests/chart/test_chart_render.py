"""Render the chart and assert what matters: shared volume and paths, ports, security, checksum, schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    CHART,
    SCENARIOS,
    all_containers,
    configured_status_paths,
    container,
    exporter_config,
    flag,
    objects,
    one,
    openvpn_containers,
    pod_spec,
    render,
    render_error,
    run_helm,
    status_args,
)

EXPORTER_UID = 65532


def notes_text(values: dict[str, Any], tmp_path: Path) -> str:
    """NOTES.txt as `helm install` prints it (`helm template` leaves it out); --dry-run=client needs no cluster."""
    values_file = tmp_path / "notes-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = run_helm("install", "vpn", str(CHART), "--namespace", "network", "--dry-run=client", "-f", str(values_file))
    return out.stdout.split("NOTES:", 1)[1]


@pytest.fixture(params=SCENARIOS, ids=lambda p: p.name.removesuffix("-values.yaml"))
def scenario(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_containers_share_the_volume_and_agree_on_status_paths(scenario: Path, helm_bin: str) -> None:
    manifests = render(files=[scenario])
    spec = pod_spec(manifests)
    exporter = container(spec, "openvpn-exporter")
    prepare = container(spec, "openvpn-exporter-prepare")
    config = exporter_config(manifests, spec)

    shared = {m["name"]: m["mountPath"] for m in exporter["volumeMounts"]}
    [volume] = [v for v in spec["volumes"] if "emptyDir" in v and v["name"] in shared]
    mount_path = shared[volume["name"]]
    openvpns = openvpn_containers(spec)
    assert openvpns
    written: set[str] = set()
    for openvpn in openvpns:
        mounts = {m["name"]: m["mountPath"] for m in openvpn["volumeMounts"]}
        assert mounts.get(volume["name"]) == mount_path, f"{openvpn['name']} does not share {volume['name']}"
        args = openvpn["args"]
        path, interval = status_args(openvpn)
        assert path.startswith(mount_path.rstrip("/") + "/")
        assert interval >= 1
        assert args[args.index("--status-version") + 1] == "3"
        proto = openvpn["name"].removeprefix("openvpn-")
        assert args[args.index("--proto") + 1].startswith(proto)
        written.add(path)
        # The port OpenVPN listens on is the port the container declares.
        [port] = openvpn["ports"]
        assert args[args.index("--port") + 1] == str(port["containerPort"])
        assert port["protocol"] == proto.upper()

    assert {m["name"]: m["mountPath"] for m in prepare["volumeMounts"]}[volume["name"]] == mount_path
    prepared = {a for a in prepare["args"] if a.startswith("/")}
    assert prepared == written
    assert prepare["args"][0] == "prepare"
    assert flag(prepare["args"], "--mode") == "0660"

    management = {s["management"] for s in config.get("sources", []) if "management" in s}
    if management:
        sockets = {o["args"][o["args"].index("--management") + 1] for o in openvpns}
        assert management == sockets
        assert all(s.startswith(mount_path) for s in sockets)
    else:
        assert configured_status_paths(config) == written


def test_metrics_port_only_on_the_metrics_service(scenario: Path, helm_bin: str) -> None:
    manifests = render(files=[scenario])
    spec = pod_spec(manifests)
    exporter = container(spec, "openvpn-exporter")
    [metrics_port] = exporter["ports"]
    assert metrics_port["name"] == "metrics"
    listen = flag(exporter["args"], "--web.listen-address")
    assert listen is not None
    assert listen.rsplit(":", 1)[1] == str(metrics_port["containerPort"])

    services = objects(manifests, "Service")
    metrics = [s for s in services if s["metadata"]["labels"].get("app.kubernetes.io/component") == "metrics"]
    vpn = [s for s in services if s["metadata"]["labels"].get("app.kubernetes.io/component") == "vpn"]
    assert len(metrics) == 1
    assert vpn
    assert len(metrics) + len(vpn) == len(services)
    assert metrics[0]["spec"]["type"] == "ClusterIP"
    assert [p["targetPort"] for p in metrics[0]["spec"]["ports"]] == ["metrics"]

    openvpn_ports = {p["name"] for c in openvpn_containers(spec) for p in c["ports"]}
    for service in vpn:
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in openvpn_ports
            assert port["targetPort"] != "metrics"
            assert port["targetPort"] != metrics_port["containerPort"]
    assert {p["targetPort"] for s in vpn for p in s["spec"]["ports"]} == openvpn_ports


def test_vpn_service_type_and_protocols(helm_bin: str) -> None:
    manifests = render(
        {"openvpn": {"tcp": {"enabled": True, "port": 443}}, "service": {"type": "LoadBalancer", "ports": {"tcp": 443}}}
    )
    [vpn] = [s for s in objects(manifests, "Service") if s["metadata"]["name"] == "vpn-openvpn-exporter"]
    assert vpn["spec"]["type"] == "LoadBalancer"
    assert {(p["protocol"], p["port"]) for p in vpn["spec"]["ports"]} == {("UDP", 1194), ("TCP", 443)}
    per_protocol = render({"openvpn": {"tcp": {"enabled": True}}, "service": {"perProtocol": True}})
    names = {s["metadata"]["name"] for s in objects(per_protocol, "Service")}
    assert names == {"vpn-openvpn-exporter-udp", "vpn-openvpn-exporter-tcp", "vpn-openvpn-exporter-metrics"}
    tcp_only = render({"openvpn": {"udp": {"enabled": False}, "tcp": {"enabled": True}}})
    assert [c["name"] for c in openvpn_containers(pod_spec(tcp_only))] == ["openvpn-tcp"]
    assert "enable at least one" in render_error({"openvpn": {"udp": {"enabled": False}}})


def assert_hardened(security: dict[str, Any]) -> None:
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == EXPORTER_UID
    assert security["runAsGroup"] == EXPORTER_UID
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"


def test_security_context(helm_bin: str) -> None:
    manifests = render()
    spec = pod_spec(manifests)
    assert spec["automountServiceAccountToken"] is False
    assert one(manifests, "ServiceAccount")["automountServiceAccountToken"] is False
    for name in ("openvpn-exporter", "openvpn-exporter-prepare"):
        assert_hardened(container(spec, name)["securityContext"])
    test_pod = one(manifests, "Pod")
    assert_hardened(test_pod["spec"]["containers"][0]["securityContext"])
    assert test_pod["spec"]["automountServiceAccountToken"] is False
    # seccomp RuntimeDefault everywhere: both pods, whatever a container's own context says.
    for pod in (spec, test_pod["spec"]):
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}

    exporter = container(spec, "openvpn-exporter")
    assert exporter["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert exporter["resources"]["limits"]["memory"]
    shared = next(m for m in exporter["volumeMounts"] if m["mountPath"] == "/run/openvpn")
    assert shared["readOnly"] is True

    # OpenVPN: root with NET_ADMIN only and /dev/net/tun; it writes the status files through the fsGroup.
    [openvpn] = openvpn_containers(spec)
    assert openvpn["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert openvpn["securityContext"]["allowPrivilegeEscalation"] is False
    assert any(m["mountPath"] == "/dev/net/tun" for m in openvpn["volumeMounts"])
    tun = next(v for v in spec["volumes"] if v["name"] == "dev-net-tun")
    assert tun["hostPath"] == {"path": "/dev/net/tun", "type": "CharDevice"}
    # Pod level: seccomp for every container, and the group the shared files belong to.
    assert spec["securityContext"] == {"fsGroup": EXPORTER_UID, "seccompProfile": {"type": "RuntimeDefault"}}
    prepare = container(spec, "openvpn-exporter-prepare")
    assert flag(prepare["args"], "--mode") == "0660"
    assert flag(prepare["args"], "--group") == str(EXPORTER_UID)


def caps_values(add: list[str], drop: list[str], **pod: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"openvpn": {"securityContext": {"capabilities": {"add": add, "drop": drop}}}}
    if pod:
        values["podSecurityContext"] = pod
    return values


def test_guard_checks_effective_capabilities(helm_bin: str) -> None:
    # Accepted: drop ALL + add NET_ADMIN (either spelling), the runtime default plus NET_ADMIN, privileged.
    for add, drop in ((["NET_ADMIN"], ["ALL"]), (["CAP_NET_ADMIN"], ["all"]), (["NET_ADMIN"], [])):
        render(caps_values(add, drop))
    render({"openvpn": {"securityContext": {"privileged": True}}})
    render(caps_values(["NET_ADMIN"], ["NET_ADMIN"]))  # containerd and CRI-O apply add after drop
    # Refused: NET_ADMIN dropped or never added, whatever the other words say.
    for add, drop in (([], ["ALL"]), ([], ["NET_ADMIN"]), (["DAC_OVERRIDE"], ["ALL"])):
        assert "OpenVPN needs NET_ADMIN" in render_error(caps_values(add, drop))
    # Without an fsGroup OpenVPN can write the exporter's files only with DAC_OVERRIDE.
    no_group = {"podSecurityContext": {"fsGroup": None}}
    message = render_error({**caps_values(["NET_ADMIN"], ["ALL"]), **no_group})
    assert "podSecurityContext.fsGroup" in message
    spec = pod_spec(render({**caps_values(["NET_ADMIN", "DAC_OVERRIDE"], ["ALL"]), **no_group}))
    assert flag(container(spec, "openvpn-exporter-prepare")["args"], "--group") is None
    assert "fsGroup" in render_error(
        {
            "podSecurityContext": {"fsGroup": None},
            "openvpn": {"management": {"enabled": True}, "securityContext": {"privileged": True}},
        }
    )


def test_resources_and_probes_are_settable(helm_bin: str) -> None:
    spec = pod_spec(
        render(
            {
                "exporter": {
                    "resources": {"limits": {"cpu": "200m"}},
                    "livenessProbe": {"enabled": False},
                    "readinessProbe": {"periodSeconds": 30},
                }
            }
        )
    )
    exporter = container(spec, "openvpn-exporter")
    assert exporter["resources"]["limits"]["cpu"] == "200m"
    assert "livenessProbe" not in exporter
    assert exporter["readinessProbe"]["periodSeconds"] == 30


def test_no_checksum_of_exporter_config(helm_bin: str) -> None:
    """exporter.yaml is reloaded in place (the ConfigMap is mounted without subPath): no annotation hashes it,
    so changing it never restarts OpenVPN. tests/chart/test_chart_upgrades.py compares whole pod templates."""
    template = one(render({"podAnnotations": {"a": "b"}}), "Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"] == {"a": "b"}


def test_web_config_checksum_and_args(helm_bin: str) -> None:
    users = {"prometheus": "$2b$10$TtGdhgY.6HKvVNsj977EV.AO17NoSb1m1cvoemuLfnpYM54k9KYsG"}
    manifests = render({"exporter": {"webConfig": {"basicAuthUsers": users}}})
    spec = pod_spec(manifests)
    exporter = container(spec, "openvpn-exporter")
    path = flag(exporter["args"], "--web.config.file")
    assert path == "/etc/openvpn-exporter-web/web-config.yml"
    secret = one(manifests, "Secret")
    assert "basic_auth_users" in secret["stringData"]["web-config.yml"]
    annotations = one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/web-config" in annotations
    # TLS switches probes and the ServiceMonitor to https.
    tls = render(
        {
            "exporter": {"webConfig": {"tls": {"enabled": True, "secretName": "exporter-tls"}}},
            "serviceMonitor": {"enabled": True},
        }
    )
    exporter = container(pod_spec(tls), "openvpn-exporter")
    assert exporter["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert one(tls, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "https"
    assert "enabled needs exporter.webConfig.tls.secretName" in render_error(
        {"exporter": {"webConfig": {"tls": {"enabled": True}}}}
    )


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"exporter": {"imag": {"tag": "x"}}}, "imag"),
        ({"serviceMonitor": {"enabled": True, "intervall": "30s"}}, "intervall"),
        ({"serviceMonitors": {"enabled": True}}, "serviceMonitors"),
        ({"openvpn": {"udp": {"enable": True}}}, "enable"),
        ({"exporter": {"port": "9234"}}, "port"),
        ({"serviceMonitor": {"interval": "30 seconds"}}, "interval"),
        ({"service": {"type": "Loadbalancer"}}, "type"),
        ({"openvpn": {"tcp": {"proto": "tcp"}}}, "proto"),
    ],
)
def test_schema_rejects_typos_and_wrong_types(values: dict[str, Any], complaint: str, helm_bin: str) -> None:
    message = render_error(values)
    assert "schema" in message
    assert complaint in message


def test_native_sidecar_mode(helm_bin: str) -> None:
    spec = pod_spec(render({"exporter": {"nativeSidecar": True}}))
    init_names = [c["name"] for c in spec["initContainers"]]
    assert init_names == ["openvpn-exporter-prepare", "openvpn-exporter"]
    assert container(spec, "openvpn-exporter")["restartPolicy"] == "Always"
    assert "openvpn-exporter" not in [c["name"] for c in spec["containers"]]
    assert all("restartPolicy" not in c for c in spec["containers"])


def test_management_socket_mode(helm_bin: str) -> None:
    manifests = render({"openvpn": {"management": {"enabled": True}}})
    spec = pod_spec(manifests)
    [openvpn] = openvpn_containers(spec)
    # No umask wrapper (OpenVPN binds the socket under umask 0 anyway): it accepts the exporter's user only.
    assert openvpn["command"] == ["openvpn"]
    args = openvpn["args"]
    assert args[args.index("--management-client-user") + 1] == "openvpn-exporter"
    plain = openvpn_containers(pod_spec(render({"openvpn": {"management": {"enabled": True, "clientUser": ""}}})))
    assert "--management-client-user" not in plain[0]["args"]
    config = exporter_config(manifests, spec)
    assert config["sources"] == [{"name": "udp", "management": "/run/openvpn/udp-management.sock", "protocol": "udp"}]


def test_servicemonitor_fields(helm_bin: str) -> None:
    manifests = render(files=[CHART / "ci" / "monitoring-values.yaml"])
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    # /prom: the OpenVPN metrics plus the openvpn_exporter_* series the alerts and dashboard read.
    assert endpoint["path"] == "/prom"
    assert endpoint["interval"] == "15s"
    assert endpoint["scrapeTimeout"] == "5s"
    assert endpoint["honorLabels"] is True
    assert endpoint["relabelings"][0]["targetLabel"] == "node"
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    # The selector picks the metrics Service and nothing else.
    selector = monitor["spec"]["selector"]["matchLabels"]
    matched = [s for s in objects(manifests, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in matched] == ["vpn-openvpn-exporter-metrics"]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["network"]
    dashboard = one(manifests, "ConfigMap", "vpn-openvpn-exporter-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    # The project's dashboard (tests/rules checks its metric names), with a uid of this release's own.
    shipped = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    rendered = json.loads(dashboard["data"]["openvpn-exporter.json"])
    own = ("uid", "title")
    assert {k: v for k, v in rendered.items() if k not in own} == {k: v for k, v in shipped.items() if k not in own}
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", rendered["uid"])
    assert rendered["title"] == "OpenVPN (network/vpn-openvpn-exporter)"
    assert not (CHART / "dashboards").exists()


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({}, "/prom"),
        ({"serviceMonitor": {"path": ""}}, "/metrics"),
        ({"serviceMonitor": {"path": ""}, "exporter": {"telemetryPath": "/ovpn"}}, "/ovpn"),
        ({"serviceMonitor": {"path": "/custom"}}, "/custom"),
    ],
)
def test_servicemonitor_path_helm_test_and_notes_agree(values: dict[str, Any], path: str, tmp_path: Path) -> None:
    values = {**values, "serviceMonitor": {"enabled": True, **values.get("serviceMonitor", {})}}
    manifests = render(values)
    [endpoint] = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["path"] == path
    [check] = one(manifests, "Pod")["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in check["env"]}
    telemetry = values.get("exporter", {}).get("telemetryPath", "/metrics")
    assert env["METRICS_URL"].endswith(f":9234{telemetry}")
    # The hook also checks what Prometheus scrapes, when that is another path.
    if path == telemetry:
        assert "SCRAPE_URL" not in env
    else:
        assert env["SCRAPE_URL"] == f"http://vpn-openvpn-exporter-metrics.network.svc:9234{path}"
    notes = notes_text(values, tmp_path)
    assert f"A ServiceMonitor scrapes {path} every 30s." in notes
    assert ("has no openvpn_exporter_* series" in notes) == (path == telemetry)


def test_user_config_secret_is_mounted(helm_bin: str) -> None:
    spec = pod_spec(render({"openvpn": {"config": {"existingSecret": "my-vpn", "file": "udp.conf"}}}))
    [openvpn] = openvpn_containers(spec)
    assert openvpn["args"][:4] == ["--cd", "/etc/openvpn", "--config", "/etc/openvpn/udp.conf"]
    volume = next(v for v in spec["volumes"] if v["name"] == "openvpn-config")
    assert volume["secret"]["secretName"] == "my-vpn"
    assert {"name": "openvpn-config", "mountPath": "/etc/openvpn", "readOnly": True} in openvpn["volumeMounts"]


def test_workload_disabled_renders_monitoring_only(helm_bin: str, tmp_path: Path) -> None:
    assert render({"workload": {"enabled": False}}) == []
    pods = {"app.kubernetes.io/name": "my-openvpn"}
    monitoring = {
        "workload": {"enabled": False},
        "podMonitor": {"enabled": True, "selectorOverride": pods},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    }
    manifests = render(monitoring)
    assert sorted(m["kind"] for m in manifests) == ["ConfigMap", "PodMonitor", "PrometheusRule"]
    assert one(manifests, "ConfigMap")["metadata"]["name"].endswith("-dashboard")
    from test_chart_lint_validate import validate_operator_object

    for manifest in manifests:
        if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            validate_operator_object(manifest)
    monitor = one(manifests, "PodMonitor")
    assert monitor["spec"]["selector"] == {"matchLabels": pods}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["podMetricsEndpoints"][0]["path"] == "/prom"
    # The alerts are scoped to what the PodMonitor scrapes: its job, <namespace>/<name>.
    for rule in one(manifests, "PrometheusRule")["spec"]["groups"][0]["rules"]:
        assert rule["expr"].endswith(' up{job="network/vpn-openvpn-exporter"}'), rule["expr"]
    # A ServiceMonitor for someone else's metrics Service works the same way.
    services = {"app": "my-openvpn-metrics"}
    by_service = render(
        {"workload": {"enabled": False}, "serviceMonitor": {"enabled": True, "selectorOverride": services}}
    )
    assert one(by_service, "ServiceMonitor")["spec"]["selector"] == {"matchLabels": services}
    # Without a selector there is nothing to scrape: say which value to set.
    assert "podMonitor.selectorOverride" in render_error(
        {"workload": {"enabled": False}, "podMonitor": {"enabled": True}}
    )
    assert "serviceMonitor.selectorOverride" in render_error(
        {"workload": {"enabled": False}, "serviceMonitor": {"enabled": True}}
    )
    no_scope = {"workload": {"enabled": False}, "prometheusRule": {"enabled": True}}
    assert "prometheusRule.selector" in render_error(no_scope)
    notes = notes_text(monitoring, tmp_path)
    assert "this release runs no OpenVPN" in notes
    assert '{"app.kubernetes.io/name":"my-openvpn"}' in notes


def test_helm_test_hook_checks_metrics(helm_bin: str) -> None:
    manifests = render()
    pod = one(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [check] = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in check["env"]}
    assert env["METRICS_URL"] == "http://vpn-openvpn-exporter-metrics.network.svc:9234/metrics"
    assert "SCRAPE_URL" not in env  # no ServiceMonitor: nothing else to check
    assert "ovpn_sessions_total" in check["command"][2]
    assert all(c["name"] != "openvpn-exporter" for c in all_containers(pod["spec"]))
