"""Render the Helm chart with the real helm binary and pick objects out of the manifests."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.common import missing, tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
CONSUMER_CHART = REPO / "examples" / "consumer-chart"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "vpn"
NAMESPACE = "network"

Manifest = dict[str, Any]


require_or_skip = missing


def helm() -> str:
    return tool("helm", "run .ci/install-helm.sh")


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def _values_args(values: dict[str, Any] | None, files: list[Path], tmp: Path) -> list[str]:
    args: list[str] = []
    for file in files:
        args += ["-f", str(file)]
    if values:
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", str(path)]
    return args


def template_text(
    values: dict[str, Any] | None = None,
    files: list[Path] | None = None,
    chart: Path = CHART,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        args = _values_args(values, files or [], Path(tmp))
        return run_helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, *args, check=check)


def render(
    values: dict[str, Any] | None = None, files: list[Path] | None = None, chart: Path = CHART
) -> list[Manifest]:
    text = template_text(values, files, chart).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_error(values: dict[str, Any]) -> str:
    """Render values the chart must refuse; return helm's message."""
    result = template_text(values, check=False)
    assert result.returncode != 0, f"helm accepted {values}:\n{result.stdout[:2000]}"
    return result.stderr


def objects(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in objects(manifests, kind) if name is None or m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[m['metadata']['name'] for m in found]}"
    return found[0]


def pod_spec(manifests: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = one(manifests, "Deployment")["spec"]["template"]["spec"]
    return spec


def all_containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in all_containers(spec) if c["name"] == name]
    assert len(found) == 1, f"expected one container {name}, got {[c['name'] for c in all_containers(spec)]}"
    return found[0]


def openvpn_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in spec["containers"] if c["name"].startswith("openvpn-") and c["name"] != "openvpn-exporter"]


def status_args(openvpn: dict[str, Any]) -> tuple[str, int]:
    """(path, interval) of OpenVPN's --status option; the last one wins, as in OpenVPN."""
    args = [*openvpn.get("command", []), *openvpn["args"]]
    positions = [i for i, a in enumerate(args) if a == "--status"]
    assert positions, f"{openvpn['name']} has no --status: {args}"
    i = positions[-1]
    return args[i + 1], int(args[i + 2])


def flag(args: list[str], name: str) -> str | None:
    """Value of --name=value or --name value in an argument list (the last occurrence)."""
    value: str | None = None
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
        elif arg == name and i + 1 < len(args):
            value = args[i + 1]
    return value


def exporter_config(manifests: list[Manifest], spec: dict[str, Any]) -> dict[str, Any]:
    """exporter.yaml as the exporter container will read it: follow its --config.file to the mounted ConfigMap."""
    exporter = container(spec, "openvpn-exporter")
    path = flag(exporter["args"], "--config.file")
    assert path, "the exporter container has no --config.file"
    directory, _, key = path.rpartition("/")
    mounts = [m for m in exporter["volumeMounts"] if m["mountPath"].rstrip("/") == directory]
    assert len(mounts) == 1, f"nothing mounted at {directory}"
    assert "subPath" not in mounts[0], "the ConfigMap must be mounted without subPath so updates reach the pod"
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[0]["name"])
    configmap = one(manifests, "ConfigMap", volume["configMap"]["name"])
    loaded: dict[str, Any] = yaml.safe_load(configmap["data"][key])
    return loaded


def configured_status_paths(config: dict[str, Any]) -> set[str]:
    paths = {
        config[k]
        for k in ("ovpntcpstatus", "ovpnudpstatus", "ovpn_tcp_status", "ovpn_udp_status", "ovpn_status")
        if k in config
    }
    paths |= {s["path"] for s in config.get("sources", []) if "path" in s}
    return paths
