"""helm lint --strict, Kubernetes schemas (strict), Prometheus Operator models and promtool on every scenario."""

from __future__ import annotations

import json
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
    tool,
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
    models = {"ServiceMonitor": v1.ServiceMonitor, "PodMonitor": v1.PodMonitor, "PrometheusRule": v1.PrometheusRule}
    model = models[manifest["kind"]]
    parsed = model.model_validate(manifest)
    dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = _unknown_fields(manifest, dumped)
    assert not unknown, f"{manifest['kind']} fields unknown to the CRD: {unknown}"


def test_operator_objects_match_the_crd_models(scenario: Path, helm_bin: str) -> None:
    manifests = render(files=[scenario])
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        for manifest in objects(manifests, kind):
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
    return tool("promtool", "apt-get install -y prometheus")


RULES_FILE = CHART / "files" / "prometheus-rules.yaml"
FILE_ALERTS = ["OpenVPNDown", "OpenVPNStatusStale", "OpenVPNStatusReadErrors", "OpenVPNSessionsDropped"]
FILE_ALERTS += ["OpenVPNReconnectStorm"]  # connection churn
SELECTOR = 'up{namespace="network", service="vpn-openvpn-exporter-metrics"}'
# Alerts about a release as a whole carry its namespace and job, not an instance of it.
SCOPE_BY = {"OpenVPNSessionsDropped": "namespace, job"}


def scope(alert: str, selector: str = SELECTOR) -> str:
    return f"and on ({SCOPE_BY.get(alert, 'instance')}) {selector}"


def file_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]


def test_prometheus_rules_pass_promtool(tmp_path: Path, helm_bin: str) -> None:
    # monitoring-values: one file alert disabled, one additional rule.
    path = prometheus_rule_file(tmp_path, files=[CHART / "ci" / "monitoring-values.yaml"])
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(FILE_ALERTS) - 1 + 1} rules found" in result.stdout, result.stdout


def test_prometheus_rule_is_the_rules_file_scoped_to_this_release(helm_bin: str) -> None:
    """The chart ships the project's tested rules file: same alerts, durations, labels and annotations; only
    the expression gains the release scope."""
    rule = one(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    [group] = rule["spec"]["groups"]
    assert group["name"] == "openvpn-exporter"
    rendered = group["rules"]
    assert [r["alert"] for r in file_rules()] == [r["alert"] for r in rendered] == FILE_ALERTS
    for original, scoped in zip(file_rules(), rendered, strict=True):
        assert scoped["expr"] == f"({original['expr'].strip()}) {scope(original['alert'])}"
        assert {k: v for k, v in scoped.items() if k != "expr"} == {k: v for k, v in original.items() if k != "expr"}
    # A custom selector replaces the default one verbatim.
    custom = one(render({"prometheusRule": {"enabled": True, "selector": 'job="vpn"'}}), "PrometheusRule")
    for rule in custom["spec"]["groups"][0]["rules"]:
        assert rule["expr"].endswith(" " + scope(rule["alert"], 'up{job="vpn"}'))


def test_prometheus_rule_disabled_alerts_and_additional_rules(helm_bin: str) -> None:
    extra = {"alert": "Mine", "expr": "vector(1)", "labels": {"severity": "info"}}
    values = {
        "prometheusRule": {"enabled": True, "disabledAlerts": ["OpenVPNSessionsDropped"], "additionalRules": [extra]}
    }
    groups = one(render(values), "PrometheusRule")["spec"]["groups"]
    assert [r["alert"] for r in groups[0]["rules"]] == [a for a in FILE_ALERTS if a != "OpenVPNSessionsDropped"]
    assert groups[1] == {"name": "vpn-openvpn-exporter.additional", "rules": [extra]}  # verbatim, not scoped
    # Every file alert off and no extra rules: an empty but valid spec.
    empty = one(render({"prometheusRule": {"enabled": True, "disabledAlerts": FILE_ALERTS}}), "PrometheusRule")
    assert empty["spec"]["groups"] == []


def test_schema_knows_exactly_the_file_alerts() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    rule_values = schema["properties"]["prometheusRule"]["properties"]
    assert rule_values["disabledAlerts"]["items"]["enum"] == [r["alert"] for r in file_rules()]
    assert "defaultRules" not in rule_values


def _alert(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"exp_labels": labels, "exp_annotations": annotations}


def _series(name: str, labels: dict[str, str], **extra: str) -> str:
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in {**labels, **extra}.items()) + "}"


def test_prometheus_rules_fire_on_this_release_only(tmp_path: Path, helm_bin: str) -> None:
    """promtool test rules: the default selector matches the series a ServiceMonitor scrape of /prom produces
    for this release; another exporter in the same Prometheus with the same failures fires nothing."""
    rules = prometheus_rule_file(tmp_path, {"prometheusRule": {"enabled": True}})
    mine = "10.0.0.5:9234"
    job = "vpn-openvpn-exporter-metrics"
    mine_labels = {"namespace": "network", "service": job, "job": job, "pod": "vpn-0", "instance": mine}
    other_labels = {
        "namespace": "other",
        "service": "other-metrics",
        "job": "other-metrics",
        "pod": "x-0",
        "instance": "10.0.9.9:9234",
    }
    input_series = []
    for labels in (mine_labels, other_labels):
        input_series += [
            {"series": _series("up", labels), "values": "1x14"},
            {"series": _series("probe_success", labels, version="2.6.14"), "values": "1 1 0x12"},
            {"series": _series("openvpn_exporter_source_up", labels, source="udp"), "values": "1 1 0x12"},
            {"series": _series("openvpn_exporter_source_age_seconds", labels, source="udp"), "values": "5x14"},
            {"series": _series("ovpn_sessions_total", labels), "values": "40x11 10x3"},
            {
                "series": _series("openvpn_exporter_read_errors_total", labels, source="udp", reason="torn"),
                "values": "0+2x14",
            },
        ]
    for labels in (mine_labels, other_labels):  # a reconnect storm: 10 sessions drop and return each minute
        input_series += [
            {"series": _series(f"ovpn_session_{kind}_total", labels, source="udp"), "values": "0+10x14"}
            for kind in ("starts", "ends")
        ]
    down = (
        f"No status source of {mine} was read completely and fresh for 5 minutes (OpenVPN 2.6.14). Check that "
        "OpenVPN runs and writes its status file or answers on its management interface."
    )
    stale = (
        f"Source udp on {mine} has not been read completely and fresh for 5 minutes. OpenVPN may have stopped, "
        "or the exporter cannot read its status file or socket."
    )
    errors = f"{mine} failed to read source udp 20 times in 10 minutes (reason: torn)."
    dropped = f"{job} has 10 sessions, less than half of what it had 10 minutes ago."
    cases = [
        ("4m", "OpenVPNDown", []),
        ("9m", "OpenVPNDown", [_alert({"severity": "critical", **mine_labels, "version": "2.6.14"},
                                      {"summary": f"OpenVPN is down on {mine}", "description": down})]),
        ("9m", "OpenVPNStatusStale", [_alert({"severity": "warning", **mine_labels, "source": "udp"},
                                             {"summary": "OpenVPN status source udp is stale or unreadable",
                                              "description": stale})]),
        ("14m", "OpenVPNStatusReadErrors", [_alert({"severity": "warning", "instance": mine, "source": "udp",
                                                    "reason": "torn"},
                                                   {"summary": "Read errors on OpenVPN status source udp",
                                                    "description": errors})]),
        ("13m", "OpenVPNSessionsDropped", [_alert({"severity": "warning", "namespace": "network", "job": job,
                                                   "instance": job},
                                                  {"summary": f"OpenVPN sessions dropped by more than half on {job}",
                                                   "description": dropped})]),
    ]  # fmt: skip
    storm = (
        f"100 sessions started on {mine} in 10 minutes, more than half of the sessions it has, and more than 20"
        " ended. ovpn_client_reconnects_total (metrics.client_reconnects) or /sessions tell which clients."
    )
    cases.append(
        ("12m", "OpenVPNReconnectStorm", [_alert({"severity": "warning", "instance": mine},
                                                 {"summary": f"OpenVPN clients keep reconnecting on {mine}",
                                                  "description": storm})])
    )  # fmt: skip
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    {"eval_time": at, "alertname": name, "exp_alerts": alerts} for at, name, alerts in cases
                ],
            }
        ],
    }
    path = tmp_path / "rules-test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same input without the scope fires for the other exporter too: the scope is what keeps it out.
    unscoped = yaml.safe_load(rules.read_text())
    for rule in unscoped["groups"][0]["rules"]:
        rule["expr"] = rule["expr"].removesuffix(" " + scope(rule["alert"]))
    rules.write_text(yaml.safe_dump(unscoped))
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # Each alert fails for the other exporter's instance.
    for name in FILE_ALERTS:
        assert f"alertname: {name}," in output, output
    assert "10.0.9.9:9234" in output, output
    assert 'job="other-metrics"' in output, output
