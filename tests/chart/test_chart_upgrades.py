"""Upgrades keep the VPN up, and one version source: what rolls the pod, and which tag every image gets."""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import yaml
from chart_helpers import CHART, Manifest, all_containers, one, render, run_helm

EXPORTER_REPO = "ghcr.io/openvpn-exporter/openvpn-exporter"
OPENVPN_REPO = "ghcr.io/openvpn-exporter/openvpn"


def pod_template_text(manifests: list[Manifest]) -> str:
    """The pod template as the API server would store it, byte for byte what a rollout compares."""
    return yaml.safe_dump(one(manifests, "Deployment")["spec"]["template"], sort_keys=True)


def chart_copy(tmp_path: Path, **chart_yaml: str) -> Path:
    target = tmp_path / "chart"
    shutil.copytree(CHART, target)
    meta = yaml.safe_load((target / "Chart.yaml").read_text())
    meta.update(chart_yaml)
    (target / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return target


def images(manifests: list[Manifest]) -> list[str]:
    found = []
    for manifest in manifests:
        spec = manifest["spec"]["template"]["spec"] if manifest["kind"] == "Deployment" else manifest.get("spec", {})
        if manifest["kind"] in ("Deployment", "Pod"):
            found += [c["image"] for c in all_containers(spec)]
    return found


def test_chart_version_bump_leaves_the_pod_template_byte_identical(tmp_path: Path, helm_bin: str) -> None:
    values: dict[str, Any] = {"exporter": {"webConfig": {"basicAuthUsers": {"prom": "$2b$10$abc"}}}}
    before = render(values)
    after = render(values, chart=chart_copy(tmp_path, version="1.99.0"))
    # The bump is visible on the objects themselves (helm.sh/chart), never in the pod template.
    assert one(before, "Deployment")["metadata"] != one(after, "Deployment")["metadata"]
    assert pod_template_text(before) == pod_template_text(after)
    labels = one(after, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels == one(after, "Deployment")["spec"]["selector"]["matchLabels"]


def test_exporter_config_change_leaves_the_pod_template_byte_identical(helm_bin: str) -> None:
    before = render()
    config = {"serverName": "other", "staleAfter": "3m", "extra": {"enable_reload_endpoint": True}}
    changed = {"exporter": {"config": config}}
    after = render(changed)
    # The ConfigMap carries the change (the exporter reloads it in place) ...
    assert one(before, "ConfigMap")["data"] != one(after, "ConfigMap")["data"]
    assert "server_name: other" in one(after, "ConfigMap")["data"]["exporter.yaml"]
    # ... and the pod, hence OpenVPN, is left alone.
    assert pod_template_text(before) == pod_template_text(after)


def test_pod_labels_are_selector_labels_plus_pod_labels(helm_bin: str) -> None:
    deployment = one(render({"podLabels": {"team": "net"}, "commonLabels": {"cost": "vpn"}}), "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {**deployment["spec"]["selector"]["matchLabels"], "team": "net"}


def test_web_config_content_still_rolls_the_pod(helm_bin: str) -> None:
    """The exporter reads its web config at start: a new basic auth user must reach it, by a rollout."""
    first = render({"exporter": {"webConfig": {"basicAuthUsers": {"prom": "$2b$10$abc"}}}})
    second = render({"exporter": {"webConfig": {"basicAuthUsers": {"prom": "$2b$10$xyz"}}}})
    assert pod_template_text(first) != pod_template_text(second)


def test_packaged_chart_tags_every_image_with_its_app_version(tmp_path: Path, helm_bin: str) -> None:
    run_helm("package", str(CHART), "--version", "7.7.7", "--app-version", "7.7.7", "--destination", str(tmp_path))
    package = tmp_path / "openvpn-exporter-7.7.7.tgz"
    with tarfile.open(package) as tar:
        member = tar.extractfile("openvpn-exporter/Chart.yaml")
        assert member is not None
        assert yaml.safe_load(member.read())["appVersion"] == "7.7.7"
    values = {"openvpn": {"tcp": {"enabled": True, "port": 443}}, "exporter": {"nativeSidecar": True}}
    manifests = render(values, chart=package)
    found = images(manifests)
    assert len(found) >= 5, found  # prepare, exporter, two OpenVPN, the helm test pod
    assert {image.rsplit(":", 1)[1] for image in found} == {"7.7.7"}, found
    assert {image.rsplit(":", 1)[0] for image in found} == {EXPORTER_REPO, OPENVPN_REPO}


def test_no_version_literal_in_helpers() -> None:
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    assert not re.search(r"\b\d+\.\d+\.\d+\b", text), re.findall(r"\b\d+\.\d+\.\d+\b", text)


def test_default_images_are_the_published_ones(helm_bin: str) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    found = set(images(render()))
    assert found == {f"{EXPORTER_REPO}:{app_version}", f"{OPENVPN_REPO}:{app_version}"}


def test_global_image_registry_is_honoured(helm_bin: str) -> None:
    manifests = render({"global": {"imageRegistry": "mirror.example:5000"}, "openvpn": {"image": {"tag": "2.6"}}})
    found = set(images(manifests))
    assert all(i.startswith("mirror.example:5000/openvpn-exporter/") for i in found), found
    assert "mirror.example:5000/openvpn-exporter/openvpn:2.6" in found
    # An empty registry keeps a repository as given (locally loaded images, as kind/e2e.sh does).
    local = render({"openvpn": {"image": {"registry": "", "repository": "my-openvpn", "tag": "x"}}})
    assert "my-openvpn:x" in images(local)
