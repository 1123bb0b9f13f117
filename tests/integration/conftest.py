"""Fixtures of the integration suite: the OpenVPN lab (one per status-version) and the exporter on it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.common import missing, wait_for
from tests.support.exporter_process import console_script

from .exporterproc import Exporter
from .lab import MARKER, Client, Lab, Server, capability_problem, clean_leftovers

XSS = "<img src=x onerror=alert(1)>"
REPO_ROOT = Path(__file__).resolve().parents[2]
STATUS_VERSIONS = [1, 2, 3]


require_or_skip = missing


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = REPO_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def exporter_binary() -> str:
    binary = console_script()
    if binary is None:
        require_or_skip("the openvpn-exporter console script is not installed (pip install -e .)")
    return binary


@pytest.fixture(scope="session")
def lab_host() -> None:
    """Clean what a killed earlier run left behind, then make sure this host can run the lab at all."""
    if os.geteuid() == 0 and shutil.which("ip"):
        clean_leftovers()
    problem = capability_problem()
    if problem:
        require_or_skip(problem)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temp dir carrying the suite's marker, so processes started with paths in it are cleanable."""
    path = Path(tempfile.mkdtemp(prefix=f"{MARKER}{os.getpid()}-t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class LabEnv:
    """One lab: a UDP and a TCP server with their clients."""

    lab: Lab
    udp: Server
    tcp: Server

    @property
    def status_version(self) -> int:
        return self.lab.status_version

    def clients(self) -> list[Client]:
        return [c for c in self.lab.clients.values() if c.server in (self.udp, self.tcp)]

    def expected_sessions(self) -> int:
        return len(self.clients())

    def expected_labels(self) -> set[str]:
        return {c.label for c in self.clients()}

    def expected_version(self) -> str:
        # v1 files carry no TITLE line: the exporter documents "unknown" for the version then.
        return "unknown" if self.status_version == 1 else self.lab.version

    def client(self, common_name: str, proto: str) -> Client:
        return next(c for c in self.clients() if c.common_name == common_name and c.server.proto == proto)


@dataclass
class Deployment(LabEnv):
    """The lab plus the exporter reading its status files."""

    exporter: Exporter


def _build_lab(version: int) -> LabEnv:
    lab = Lab(version)
    try:
        udp = lab.start_server("udp", "udp", 1194, "10.8.0")
        tcp = lab.start_server("tcp", "tcp", 1195, "10.9.0", userpass=True)
        clients = [
            # Two sessions with one CN (duplicate-cn): one series, summed.
            lab.start_client("twin", udp, wait=False),
            lab.start_client("twin", udp, wait=False),
            # Hostile CN: must stay text in the exposition format, the JSON and the HTML page.
            lab.start_client(XSS, udp, wait=False),
            # The same CN on both protocols: two series, roamer_udp and roamer_tcp.
            lab.start_client("roamer", udp, wait=False),
            lab.start_client("alice", tcp, username="alice", wait=False),
            # Hostile username on the server that fills the Username column.
            lab.start_client("roamer", tcp, username=XSS, wait=False),
        ]
        for client in clients:
            lab.wait_initialized(client)
        lab.start_echo()
        lab.wait_status_settled()
    except BaseException:
        lab.close()
        raise
    return LabEnv(lab, udp, tcp)


@pytest.fixture(scope="session", params=STATUS_VERSIONS, ids=[f"status-v{v}" for v in STATUS_VERSIONS])
def lab_env(request: pytest.FixtureRequest, lab_host: None) -> Iterator[LabEnv]:
    """The lab alone (its self-checks run without the exporter); one per status-version."""
    env = _build_lab(request.param)
    try:
        yield env
    finally:
        env.lab.close()


@pytest.fixture(scope="session")
def deployment(lab_env: LabEnv, exporter_binary: str) -> Iterator[Deployment]:
    """The exporter as users run it, reading the lab's two status files."""
    exporter = Exporter(
        exporter_binary,
        lab_env.lab.root / "exporter",
        {
            "ovpntcpstatus": str(lab_env.tcp.status),
            "ovpnudpstatus": str(lab_env.udp.status),
            # The servers rewrite every ~1 s while clients are connected; 30 s keeps a loaded CI host
            # from flapping. The staleness test runs its own exporter with a short stale_after.
            "stale_after": 30,
        },
    )
    try:
        yield Deployment(lab_env.lab, lab_env.udp, lab_env.tcp, exporter)
    finally:
        exporter.stop()


__all__ = ["XSS", "Deployment", "LabEnv", "require_or_skip", "wait_for"]
