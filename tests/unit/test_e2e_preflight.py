"""The kind suite's tun check and ci/ scenario loop (tests/e2e/e2e_preflight.py, run by kind/e2e.sh as
`python -m tests.e2e.e2e_preflight`), tested without a cluster: manifests validated against the Kubernetes
schema, scenarios rendered by the real helm with the values kind/e2e.sh lays over them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.e2e import e2e_preflight as pre
from tests.support.common import tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
K8S_VERSION = "1.33"  # kind v0.29.0's node image
IMAGES = {"exporter_image": "openvpn-exporter:e2e-7", "openvpn_image": "openvpn-exporter-openvpn:e2e-7"}


def _chart_openvpn_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = next(c for c in containers if "/dev/net/tun" in str(c.get("volumeMounts")))
    return found


def _render(*value_files: Path) -> list[dict[str, Any]]:
    helm = tool("helm", "bash .ci/install-helm.sh")
    args = [a for f in value_files for a in ("-f", str(f))]
    result = subprocess.run([helm, "template", "rel", str(CHART), "--namespace", "ovpn-e2e", *args],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_tun_pod_is_a_valid_unprivileged_pod_that_creates_a_tun_device() -> None:
    pod = pre.tun_pod_manifest("ovpn-e2e", IMAGES["openvpn_image"])
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    (container,) = pod["spec"]["containers"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert container["securityContext"]["privileged"] is False
    assert container["securityContext"]["capabilities"] == {"add": ["NET_ADMIN"]}
    script = container["command"][-1]
    assert f"ip tuntap add dev {pre.TUN_IFACE} mode tun" in script and pre.TUN_OK in script


def test_the_tun_pod_mounts_the_device_as_the_charts_openvpn_container_does(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(pre.scenario_values(**IMAGES, server_secret_name="s")))
    chart = _chart_openvpn_container(_render(values))
    pod = pre.tun_pod_manifest("ovpn-e2e", IMAGES["openvpn_image"])
    (container,) = pod["spec"]["containers"]
    assert chart["image"] == container["image"]
    assert not chart.get("securityContext", {}).get("privileged", False)
    assert "NET_ADMIN" in chart["securityContext"]["capabilities"]["add"]
    tun_volume = next(m["name"] for m in chart["volumeMounts"] if m["mountPath"] == "/dev/net/tun")
    deployment = next(d for d in _render(values) if d["kind"] == "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes[tun_volume]["hostPath"] == pod["spec"]["volumes"][0]["hostPath"]


def test_the_cause_names_runc_and_the_fix() -> None:
    assert "runc 1.2.0 to 1.2.3" in pre.TUN_CAUSE and "runc 1.2.4" in pre.TUN_CAUSE
    assert "/dev/net/tun" in pre.TUN_CAUSE and "kind v0.28+" in pre.TUN_CAUSE
    assert "\n" not in pre.TUN_CAUSE


def test_every_ci_file_is_installed_or_says_why_not() -> None:
    files = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
    listed = pre.scenarios(CHART)
    assert [name for name, _ in listed] == files
    assert set(pre.NOT_ON_KIND) <= set(files), "a reason for a file that no longer exists"
    installed = [name for name, reason in listed if reason is None]
    assert "default-values.yaml" in installed and len(installed) >= 2
    names = [pre.release_name(name) for name in installed]
    assert len(set(names)) == len(names) and all(len(n) <= 30 and n.startswith("ci-") for n in names)


@pytest.mark.parametrize("values_file", [n for n, r in pre.scenarios(CHART) if r is None])
def test_each_installed_scenario_renders_with_the_local_images_and_tests_enabled(
    tmp_path: Path, values_file: str
) -> None:
    overlay = tmp_path / "scenario-values.yaml"
    overlay.write_text(yaml.safe_dump(pre.scenario_values(**IMAGES, server_secret_name="ovpn-e2e-openvpn")))
    docs = _render(CHART / "ci" / values_file, overlay)
    pods = [d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"] for d in docs
            if d["kind"] in ("Deployment", "Pod")]  # fmt: skip
    containers = [c for spec in pods for c in (*spec.get("initContainers", []), *spec["containers"])]
    assert {c["image"] for c in containers} <= set(IMAGES.values())
    assert {c["imagePullPolicy"] for c in containers} == {"Never"}, "kind has the images; nothing is pulled"
    assert any(d["kind"] == "Pod" for d in docs), "the scenario carries its helm test"
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    secrets = [v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert "ovpn-e2e-openvpn" in secrets


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tests.e2e.e2e_preflight", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_the_command_line_as_kind_e2e_sh_runs_it(tmp_path: Path) -> None:
    script = (REPO / "kind" / "e2e.sh").read_text()
    assert '"$PYTHON" -m tests.e2e.e2e_preflight' in script
    tun = _cli("tun-pod", "--namespace", "ns", "--openvpn-image", "o:1")
    assert tun.returncode == 0, tun.stderr
    assert yaml.safe_load(tun.stdout) == pre.tun_pod_manifest("ns", "o:1")
    cause = _cli("tun-cause")
    assert (cause.returncode, cause.stdout) == (0, pre.TUN_CAUSE + "\n")
    assert '"$(preflight tun-cause)"' in script
    scen = _cli("scenarios", "--out", str(tmp_path), "--exporter-image", "e:1", "--openvpn-image", "o:1",
                "--server-secret", "s")  # fmt: skip
    assert scen.returncode == 0, scen.stderr
    lines = [line.split(" ", 2) for line in scen.stdout.splitlines()]
    assert [(a, f) for a, f, _ in lines] == [("skip" if r else "install", n) for n, r in pre.scenarios(CHART)]
    overlay = yaml.safe_load((tmp_path / "scenario-values.yaml").read_text())
    assert overlay == pre.scenario_values(exporter_image="e:1", openvpn_image="o:1", server_secret_name="s")
