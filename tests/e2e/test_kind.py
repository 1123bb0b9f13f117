"""The product on a real cluster: the chart installed in kind, a real OpenVPN client connected.

Prepared by kind/e2e.sh (cluster, images, Prometheus Operator CRDs, PKI Secret, `helm install`, client pod).
The tests run in file order; the last one upgrades the release.
"""

from __future__ import annotations

import json
from typing import Any

import e2e_support as sup
import pytest
from e2e_cluster import E2EEnv, Kube, run, wait_for

from tests.support.common import SESSION_KEYS

pytestmark = pytest.mark.e2e

INSTANCE = "app.kubernetes.io/instance"


def _release_pods(kube: Kube, env: E2EEnv) -> list[Any]:
    """The release's workload pods (helm test hook pods excluded)."""
    pods = kube.core.list_namespaced_pod(env.namespace, label_selector=f"{INSTANCE}={env.release}").items
    return [
        p
        for p in pods
        if "helm.sh/hook" not in (p.metadata.annotations or {}) and p.metadata.deletion_timestamp is None
    ]


def _ready(pod: Any) -> bool:
    conditions = pod.status.conditions or []
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in conditions)


def _services(kube: Kube, env: E2EEnv) -> dict[str, Any]:
    """`kubectl get svc -o json` of the release, as the plain dict the support helpers take."""
    items = kube.core.list_namespaced_service(env.namespace, label_selector=f"{INSTANCE}={env.release}").items
    return {"items": [kube.core.api_client.sanitize_for_serialization(s) for s in items]}


def _get(kube: Kube, env: E2EEnv, path: str) -> str:
    """GET `path` on the exporter through the API server's service proxy (no port-forward to clean up)."""
    metrics = sup.pick_metrics_service(_services(kube, env))
    resp = kube.core.connect_get_namespaced_service_proxy_with_path(
        f"{metrics.service}:{metrics.port}", env.namespace, path.lstrip("/"), _preload_content=False
    )
    body: bytes = resp.data
    return body.decode()


def _metrics(kube: Kube, env: E2EEnv) -> list[sup.Sample]:
    return sup.parse_exposition(_get(kube, env, "/metrics"))


def _sessions(kube: Kube, env: E2EEnv) -> list[dict[str, str]]:
    rows = json.loads(_get(kube, env, "/sessions"))
    assert isinstance(rows, list)
    return rows


def _client_session(kube: Kube, env: E2EEnv, server_name: str | None = None) -> dict[str, str] | None:
    for row in _sessions(kube, env):
        if row.get("remoteid") == env.client_cn and (server_name is None or row.get("server") == server_name):
            return row
    return None


def test_pods_become_ready(kube: Kube, e2e_env: E2EEnv) -> None:
    def all_ready() -> list[Any] | None:
        pods = _release_pods(kube, e2e_env)
        return pods if pods and all(_ready(p) for p in pods) else None

    pods = wait_for("the release's pods to be Ready", all_ready, e2e_env.timeout)
    containers = {c.name for p in pods for c in p.spec.containers} | {
        c.name for p in pods for c in (p.spec.init_containers or [])
    }
    assert len(containers) >= 2, f"expected OpenVPN and the exporter sidecar in the pod, got {containers}"
    # The exporter runs as the numeric non-root user the image and the chart promise.
    exporter = [
        c
        for p in pods
        for c in [*p.spec.containers, *(p.spec.init_containers or [])]
        if c.image.split("/")[-1].startswith("openvpn-exporter:")
    ]
    assert exporter, "no container runs the exporter image"
    run_as = [(c.security_context.run_as_user if c.security_context else None) for c in exporter]
    assert 65532 in run_as, run_as


def test_client_connects(kube: Kube, e2e_env: E2EEnv) -> None:
    name = f"{e2e_env.release}-e2e-client"

    def client_running() -> bool:
        pod = kube.core.read_namespaced_pod(name, e2e_env.namespace)
        return bool(pod.status.phase == "Running")

    wait_for("the OpenVPN client pod to run", client_running, e2e_env.timeout)
    what = f"session of {e2e_env.client_cn} in /sessions"
    row = wait_for(what, lambda: _client_session(kube, e2e_env), e2e_env.timeout)
    assert row["state"] == "ESTABLISHED", row


def test_metrics_report_the_client(kube: Kube, e2e_env: E2EEnv) -> None:
    label = sup.client_label(e2e_env.client_cn, "udp")

    def scraped() -> list[sup.Sample] | None:
        samples = _metrics(kube, e2e_env)
        return samples if sup.find_samples(samples, "ovpn_bytes_in_total", client=label) else None

    samples = wait_for(f"ovpn_bytes_in_total{{client={label!r}}}", scraped, e2e_env.timeout)
    probe = sup.find_samples(samples, "probe_success")
    assert len(probe) == 1, probe
    # Literal "1": alert rules and health checks match the text, not the float.
    assert probe[0].raw_value == "1", probe
    assert probe[0].labels.get("version"), "probe_success carries the OpenVPN version"
    sessions = sup.find_samples(samples, "ovpn_sessions_total")
    assert [s.raw_value for s in sessions] == ["1"], sessions
    bytes_out = sup.find_samples(samples, "ovpn_bytes_out_total", client=label)
    assert len(bytes_out) == 1, bytes_out
    assert bytes_out[0].value > 0
    info = sup.find_samples(samples, "ovpn_info", product="OpenVPN")
    assert len(info) == 1, info
    assert info[0].labels["version"] == probe[0].labels["version"], info


def test_sessions_row(kube: Kube, e2e_env: E2EEnv) -> None:
    row = wait_for("the client's /sessions row", lambda: _client_session(kube, e2e_env), e2e_env.timeout)
    assert list(row) == SESSION_KEYS
    assert all(isinstance(v, str) for v in row.values()), row
    assert row["server"] == e2e_env.server_name
    assert row["protocol"] == "udp"
    # The client's virtual address comes from the server's pool (server.conf: 10.8.0.0/24).
    assert row["remotets"].startswith("10.8.0."), row
    # The real address is the client pod's IP as the server sees it.
    client_pod = kube.core.read_namespaced_pod(f"{e2e_env.release}-e2e-client", e2e_env.namespace)
    assert row["remotehost"] == client_pod.status.pod_ip, (row, client_pod.status.pod_ip)
    assert row["remoteport"].isdigit(), row


def test_service_monitor_selects_metrics_service(kube: Kube, e2e_env: E2EEnv) -> None:
    monitors = kube.custom.list_namespaced_custom_object(
        "monitoring.coreos.com",
        "v1",
        e2e_env.namespace,
        "servicemonitors",
        label_selector=f"{INSTANCE}={e2e_env.release}",
    )["items"]
    assert len(monitors) == 1, [m["metadata"]["name"] for m in monitors]
    spec = monitors[0]["spec"]
    match_labels = spec["selector"].get("matchLabels") or {}
    assert match_labels, "an empty selector would select every Service in the namespace"

    services = kube.core.list_namespaced_service(e2e_env.namespace).items
    selected = [s for s in services if sup.selector_matches(match_labels, s.metadata.labels or {})]
    metrics = sup.pick_metrics_service(_services(kube, e2e_env))
    assert [s.metadata.name for s in selected] == [metrics.service], "selects exactly the metrics Service"

    ports = {p.name: p for p in selected[0].spec.ports}
    endpoint_ports = [e.get("port") for e in spec["endpoints"]]
    assert endpoint_ports, spec["endpoints"]
    assert all(p in ports for p in endpoint_ports), (endpoint_ports, list(ports))
    # /prom: the OpenVPN families plus the openvpn_exporter_* series the alerts and the dashboard read; the
    # path really serves both in the cluster.
    assert [e.get("path") for e in spec["endpoints"]] == ["/prom"], spec["endpoints"]
    scraped = {s.name for s in sup.parse_exposition(_get(kube, e2e_env, "/prom"))}
    assert {"ovpn_sessions_total", "probe_success", "openvpn_exporter_source_up"} <= scraped, sorted(scraped)
    ns_selector = spec.get("namespaceSelector") or {}
    assert not ns_selector or e2e_env.namespace in ns_selector.get("matchNames", []), ns_selector
    assert monitors[0]["metadata"]["labels"].get("release") == "e2e", "extra labels from values are applied"


def test_vpn_service_does_not_expose_metrics(kube: Kube, e2e_env: E2EEnv) -> None:
    services = _services(kube, e2e_env)
    metrics = sup.pick_metrics_service(services)
    vpn = sup.pick_vpn_service(services)
    assert vpn.service != metrics.service
    vpn_ports = [
        int(p["port"]) for s in services["items"] if s["metadata"]["name"] == vpn.service for p in s["spec"]["ports"]
    ]
    assert sup.EXPORTER_PORT not in vpn_ports, vpn_ports


def test_helm_test_passes(e2e_env: E2EEnv) -> None:
    result = run(e2e_env.helm_cmd("test", e2e_env.release, "--logs", "--timeout", "5m"))
    assert result.returncode == 0, f"helm test failed:\n{result.stdout}\n{result.stderr}"


def test_helm_upgrade_applies_config_without_restarting_openvpn(kube: Kube, e2e_env: E2EEnv) -> None:
    """Changing exporter.yaml through values keeps the pod (no checksum of it in the pod template): kubelet
    updates the ConfigMap volume, the exporter reloads it in place, and the client's session stays up."""
    before = {p.metadata.uid for p in _release_pods(kube, e2e_env)}
    assert before
    new_name = "e2e-upgraded-server"
    result = run(
        e2e_env.helm_cmd(
            "upgrade",
            e2e_env.release,
            str(e2e_env.chart),
            "--reuse-values",
            "--set",
            f"{sup.SERVER_NAME_SET_KEY}={new_name}",
            "--wait",
            "--timeout",
            "5m",
        ),
        timeout=400,
    )
    assert result.returncode == 0, f"helm upgrade failed:\n{result.stdout}\n{result.stderr}"
    # kubelet syncs a ConfigMap volume within about a minute; the exporter then reloads without a restart.
    row = wait_for(
        f"the client's row with server={new_name!r}",
        lambda: _client_session(kube, e2e_env, server_name=new_name),
        e2e_env.timeout,
    )
    assert row["remoteid"] == e2e_env.client_cn
    assert {p.metadata.uid for p in _release_pods(kube, e2e_env)} == before, "the upgrade restarted the pod"
