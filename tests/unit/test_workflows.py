"""GitHub workflows and the kind suite's shell scripts: actionlint, shellcheck, pinning, permissions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
SCRIPTS = [REPO / "kind" / "e2e.sh", REPO / ".ci" / "install-actionlint.sh"]
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)\s*$")


def require_or_skip(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _tool(name: str) -> str:
    # The venv's bin directory first: .ci/install-actionlint.sh installs actionlint there.
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        require_or_skip(f"{name} is not installed (bash .ci/install-actionlint.sh)")
        raise AssertionError  # unreachable: require_or_skip raises
    return found


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def _on(doc: dict[str, Any]) -> Any:
    # YAML 1.1 reads a bare `on` key as the boolean True.
    return doc.get("on", doc.get(True))


def test_the_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "e2e.yml", "release.yml"}


def test_actionlint_is_clean() -> None:
    actionlint = _tool("actionlint")
    # actionlint runs shellcheck on `run:` steps only when shellcheck is on PATH: make sure it is.
    _tool("shellcheck")
    result = subprocess.run(
        [actionlint, "-no-color", *[str(p) for p in WORKFLOWS]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(workflow: Path) -> None:
    uses_lines = [line for line in workflow.read_text().splitlines() if re.match(r"^\s*(?:-\s+)?uses:", line)]
    assert uses_lines
    unpinned = [line.strip() for line in uses_lines if not PINNED.match(line)]
    assert unpinned == [], "pin to a full commit SHA followed by '# vX.Y.Z'"


def test_one_version_per_action_across_workflows() -> None:
    seen: dict[str, set[tuple[str, str]]] = {}
    for workflow in WORKFLOWS:
        for line in workflow.read_text().splitlines():
            m = PINNED.match(line)
            if m:
                seen.setdefault(m.group(1), set()).add((m.group(2), m.group(3)))
    assert seen
    assert {action: pins for action, pins in seen.items() if len(pins) > 1} == {}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_permissions(workflow: Path) -> None:
    doc = _load(workflow)
    assert doc["permissions"] == {"contents": "read"}
    for name, job in doc["jobs"].items():
        perms = job.get("permissions", {})
        assert perms != "write-all", name
        writes = {k for k, v in perms.items() if v == "write"}
        if workflow.name != "release.yml":
            assert writes == set(), f"{workflow.name}:{name} must not write"
        else:
            assert writes <= {"contents", "packages"}, f"{name}: {writes}"


def test_checkouts_do_not_keep_credentials() -> None:
    for workflow in WORKFLOWS:
        for name, job in _load(workflow)["jobs"].items():
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, f"{workflow.name}:{name}"


def test_triggers() -> None:
    ci, e2e, release = (_load(REPO / ".github" / "workflows" / n) for n in ("ci.yml", "e2e.yml", "release.yml"))
    for doc in (ci, e2e):
        on = _on(doc)
        assert "pull_request" in on
        assert on["push"]["branches"] == ["main"]
    assert list(_on(release)) == ["push"]
    assert all(t.startswith("v") for t in _on(release)["push"]["tags"])


def test_workflows_call_the_makefile_targets() -> None:
    runs = "\n".join(
        str(step.get("run", ""))
        for workflow in WORKFLOWS
        for job in _load(workflow)["jobs"].values()
        for step in job["steps"]
    )
    # `make X` in command position: at a line start, after `VAR=value` or after `env "VAR=value"`.
    called = set(re.findall(r'(?m)(?:^\s*|=\S+\s+|env "[^"]*"\s+)make ([a-z][\w-]*)', runs))
    assert called >= {"lint", "typecheck", "unit", "integration", "chart-test", "image-test", "e2e"}
    makefile = REPO / "Makefile"
    if not makefile.is_file():
        require_or_skip("no Makefile yet")
    targets = set(re.findall(r"^([a-z][\w-]*)\s*:", makefile.read_text(), flags=re.M))
    assert called <= targets, f"targets the workflows call but the Makefile lacks: {called - targets}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse_and_pass_shellcheck(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert parsed.returncode == 0, parsed.stderr
    result = subprocess.run(
        [_tool("shellcheck"), "-x", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout


def test_e2e_script_cleans_up_and_builds_the_contract_images() -> None:
    text = (REPO / "kind" / "e2e.sh").read_text()
    assert "trap cleanup EXIT" in text
    assert re.search(r'delete cluster --name "\$CLUSTER"', text)
    assert "EXPORTER_IMAGE=openvpn-exporter:e2e-$RUN_ID" in text
    assert "OPENVPN_IMAGE=openvpn-exporter-openvpn:e2e-$RUN_ID" in text
    assert re.search(r'build -t "\$OPENVPN_IMAGE" kind/openvpn', text)
    assert re.search(r"load docker-image .*\$EXPORTER_IMAGE.*\$OPENVPN_IMAGE", text)
    assert re.search(r"-m pytest -m e2e tests/e2e --e2e", text)
    # A pinned Prometheus Operator release, never a moving branch.
    version = re.search(r"PROM_OPERATOR_VERSION:-(v\d+\.\d+\.\d+)\}", text)
    assert version, "pin the Prometheus Operator CRDs to a release"


def test_kind_cluster_config() -> None:
    config = yaml.safe_load((REPO / "kind" / "cluster.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in config["nodes"]] == ["control-plane"]
