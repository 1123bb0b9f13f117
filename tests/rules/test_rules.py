"""The shipped alert rules and dashboard: promtool checks and unit tests, and only real metric names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rules.promql_names import exposed_names, metric_names
from tests.support.common import tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "chart" / "files" / "prometheus-rules.yaml"
RULE_TESTS = Path(__file__).parent / "prometheus-rules.test.yaml"
DASHBOARD = ROOT / "chart" / "files" / "grafana-dashboard.json"
ALERTS = {"OpenVPNDown", "OpenVPNStatusStale", "OpenVPNStatusReadErrors", "OpenVPNSessionsDropped"}
ALERTS |= {"OpenVPNReconnectStorm"}  # connection churn; its tests are reconnect-storm.test.yaml
# Every promtool unit test file here: one per area, so that alerts added side by side merge cleanly.
RULE_TEST_FILES = sorted(Path(__file__).parent.glob("*.test.yaml"))


def promtool() -> str:
    return tool("promtool", "apt-get install prometheus")


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    return exposed_names(tmp_path_factory.mktemp("exposed"))


def rule_exprs() -> list[tuple[str, str]]:
    document = yaml.safe_load(RULES.read_text())
    return [(rule.get("alert") or rule["record"], rule["expr"]) for g in document["groups"] for rule in g["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    found = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append((f"${variable['name']}", query["query"] if isinstance(query, dict) else query))
    return found


def test_promtool_check_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", *(path.name for path in RULE_TEST_FILES)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for path in RULE_TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert {name for name, _ in rule_exprs()} == ALERTS == tested


def test_rules_read_only_metrics_the_exporter_exposes(exposed: set[str]) -> None:
    for name, expr in rule_exprs():
        used = metric_names(expr)
        assert used, name
        assert used <= exposed, f"{name}: {sorted(used - exposed)} not exposed"


def test_dashboard_is_valid_json_on_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "openvpn-exporter"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_dashboard_reads_only_metrics_the_exporter_exposes(exposed: set[str]) -> None:
    exprs = dashboard_exprs()
    used_everywhere: set[str] = set()
    for title, expr in exprs:
        used = metric_names(expr)
        assert used, f"{title}: {expr!r} reads no metric"
        assert used <= exposed, f"{title}: {sorted(used - exposed)} not exposed by the exporter"
        used_everywhere |= used
    # The panels the dashboard promises.
    for name in ("ovpn_sessions_total", "ovpn_bytes_in_total", "probe_success", "openvpn_exporter_source_age_seconds",
                 "openvpn_exporter_read_errors_total"):  # fmt: skip
        assert name in used_everywhere


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (client) (rate(ovpn_bytes_in_total{instance=~"$instance"}[$__rate_interval]))',
            {"ovpn_bytes_in_total"},
        ),
        ("a < 0.5 * (a offset 10m) and (b offset 10m) > 5", {"a", "b"}),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))", {"x_bucket"}),
        ("label_values(ovpn_sessions_total, instance)", {"ovpn_sessions_total"}),
        ('up{job="a b"} == 0 or on (instance) other_metric', {"up", "other_metric"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exposed_names_include_a_made_up_name_check(exposed: set[str]) -> None:
    # The comparison is not vacuous: the scrape has the families, and a typo would be caught.
    assert {"ovpn_sessions_total", "openvpn_exporter_source_up", "ovpn_source_sessions", "openvpn_up"} <= exposed
    assert "ovpn_session_total" not in exposed
