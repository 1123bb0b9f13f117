"""helm lint --strict, Kubernetes schemas (strict), Prometheus Operator models and promtool on every scenario."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    CHART,
    SCENARIOS,
    Manifest,
    objects,
    one,
    render,
    require_or_skip,
    run_helm,
    template_text,
)

KUBERNETES_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
# The chart's kubeVersion floor and the newest schema kubernetes-validate carries.
KUBERNETES_VERSIONS = ["1.25.0", "1.37.0"]


def scenario_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


@pytest.fixture(params=SCENARIOS, ids=scenario_id)
def scenario(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 5, SCENARIOS


def test_lint_strict_defaults(helm_bin: str) -> None:
    result = run_helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


def test_lint_strict(scenario: Path, helm_bin: str) -> None:
    result = run_helm("lint", "--strict", str(CHART), "-f", str(scenario))
    assert "0 chart(s) failed" in result.stdout


def minimum_version(manifests: list[Manifest]) -> str:
    # Native sidecars (restartPolicy on an init container) exist from Kubernetes 1.29 on.
    spec = one(manifests, "Deployment")["spec"]["template"]["spec"]
    if any("restartPolicy" in c for c in spec.get("initContainers", [])):
        return "1.29.0"
    return KUBERNETES_VERSIONS[0]


@pytest.mark.parametrize("newest", [False, True], ids=["oldest-supported", "newest"])
def test_kubernetes_validate_strict(scenario: Path, tmp_path: Path, helm_bin: str, newest: bool) -> None:
    if not KUBERNETES_VALIDATE.exists():
        require_or_skip(f"{KUBERNETES_VALIDATE} missing (pip install kubernetes-validate)")
    text = template_text(files=[scenario]).stdout
    manifests = [d for d in yaml.safe_load_all(text) if d]
    version = KUBERNETES_VERSIONS[-1] if newest else minimum_version(manifests)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(text)
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", version, str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = result.stdout.count(" passed for resource ")
    crds = len([m for m in manifests if m["apiVersion"].startswith("monitoring.coreos.com/")])
    assert passed == len(manifests) - crds, result.stdout


def test_kubernetes_validate_catches_an_unknown_field(tmp_path: Path, helm_bin: str) -> None:
    """The validator in strict mode really rejects what the chart must never render."""
    if not KUBERNETES_VALIDATE.exists():
        require_or_skip(f"{KUBERNETES_VALIDATE} missing (pip install kubernetes-validate)")
    manifests = render()
    deployment = one(manifests, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    result = subprocess.run([str(KUBERNETES_VALIDATE), "--strict", str(path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "securityContxt" in result.stdout + result.stderr


def _unknown_fields(given: Any, dumped: Any, where: str = "") -> list[str]:
    """Keys in the rendered object that the model dropped, i.e. that the CRD does not know."""
    if isinstance(given, dict) and isinstance(dumped, dict):
        out: list[str] = []
        for key, value in given.items():
            if key not in dumped:
                out.append(f"{where}.{key}")
            else:
                out += _unknown_fields(value, dumped[key], f"{where}.{key}")
        return out
    if isinstance(given, list) and isinstance(dumped, list):
        return [
            f
            for i, (g, d) in enumerate(zip(given, dumped, strict=True))
            for f in _unknown_fields(g, d, f"{where}[{i}]")
        ]
    return []


def _prometheus_operator_models() -> Any:
    try:
        from cloudcoil.models.prometheus_operator import v1
    except ImportError:
        require_or_skip("cloudcoil-models-prometheus-operator is not installed")
    return v1


def validate_operator_object(manifest: Manifest) -> None:
    v1 = _prometheus_operator_models()
    model = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}[manifest["kind"]]
    parsed = model.model_validate(manifest)
    dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = _unknown_fields(manifest, dumped)
    assert not unknown, f"{manifest['kind']} fields unknown to the CRD: {unknown}"


def test_operator_objects_match_the_crd_models(scenario: Path, helm_bin: str) -> None:
    manifests = render(files=[scenario])
    for manifest in objects(manifests, "ServiceMonitor") + objects(manifests, "PrometheusRule"):
        validate_operator_object(manifest)


def test_operator_models_reject_a_bad_servicemonitor(helm_bin: str) -> None:
    """The model check has teeth: a bad duration, a bad enum and an unknown field all fail."""
    monitor = one(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    for key, bad in (("interval", "30 seconds"), ("scheme", "gopher"), ("intervall", "30s")):
        broken = yaml.safe_load(yaml.safe_dump(monitor))
        broken["spec"]["endpoints"][0][key] = bad
        with pytest.raises(Exception):  # noqa: B017, PT011 - pydantic ValidationError or our AssertionError
            validate_operator_object(broken)


def test_servicemonitor_off_by_default(helm_bin: str) -> None:
    manifests = render()
    assert not objects(manifests, "ServiceMonitor")
    assert not objects(manifests, "PrometheusRule")


def prometheus_rule_file(tmp_path: Path, values: dict[str, Any] | None = None, files: list[Path] | None = None) -> Path:
    rule = one(render(values, files), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        require_or_skip("promtool is not on PATH (apt-get install -y prometheus)")
        raise AssertionError("unreachable")
    return path


def test_prometheus_rules_pass_promtool(tmp_path: Path, helm_bin: str) -> None:
    path = prometheus_rule_file(tmp_path, files=[CHART / "ci" / "monitoring-values.yaml"])
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout, result.stdout


def test_prometheus_rules_fire_on_this_release_only(tmp_path: Path, helm_bin: str) -> None:
    """promtool test rules: the default selector matches the series a ServiceMonitor scrape produces."""
    rules = prometheus_rule_file(tmp_path, {"prometheusRule": {"enabled": True}})
    service = "vpn-openvpn-exporter-metrics"
    mine = f'namespace="network", service="{service}", pod="vpn-0"'
    other = 'namespace="other", service="other-metrics", pod="x-0"'
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'probe_success{{{mine}, version="2.6.14"}}', "values": "1 1 0x10"},
                    {"series": f'probe_success{{{other}, version="2.6.14"}}', "values": "0x12"},
                    {"series": f"up{{{mine}}}", "values": "1x12"},
                    {"series": f"ovpn_sessions_total{{{mine}}}", "values": "40x5 10x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "OpenVPNDown", "exp_alerts": []},
                    {
                        "eval_time": "9m",
                        "alertname": "OpenVPNDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "namespace": "network",
                                    "service": service,
                                    "pod": "vpn-0",
                                    "version": "2.6.14",
                                },
                                "exp_annotations": {
                                    "summary": "OpenVPN is down or its status is stale",
                                    "description": "No status source of vpn-0 in network was read completely and "
                                    "fresh: OpenVPN stopped writing its status (down, hung or misconfigured).",
                                },
                            }
                        ],
                    },
                    {"eval_time": "9m", "alertname": "OpenVPNExporterDown", "exp_alerts": []},
                    {
                        "eval_time": "12m",
                        "alertname": "OpenVPNSessionsDropped",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": "network",
                                    "service": service,
                                    "pod": "vpn-0",
                                },
                                "exp_annotations": {
                                    "summary": "OpenVPN lost many sessions",
                                    "description": "vpn-0 in network has 10 sessions, far below its maximum of "
                                    "the last 30 minutes.",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "rules-test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
