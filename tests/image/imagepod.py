"""Helpers and fixtures for the container image suite: a real docker engine builds both images, then runs a
simulated pod (init container, OpenVPN server, exporter sidecar, OpenVPN client) in one network
namespace with no docker bridge.

The engine is expected to be up already (`.ci/install-docker.sh` installs and starts it). Without one
the suite skips locally and fails when CI is set.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.common import missing
from tests.support.pki import Authority, tls_crypt_key

REPO = Path(__file__).resolve().parents[2]
# Debian's client: a newer docker client elsewhere on PATH may refuse BuildKit without buildx.
DOCKER = os.environ.get("IMAGE_TEST_DOCKER", "/usr/bin/docker")
TAG = os.environ.get("IMAGE_TAG", "dev")
EXPORTER_IMAGE = f"openvpn-exporter:{TAG}"
OPENVPN_IMAGE = f"openvpn-exporter-openvpn:{TAG}"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Every container this suite starts carries this label, so leftovers of a killed run can be found.
POD_LABEL = "org.openvpn-exporter.test=image-pod"
EXPORTER_UID = 65532
# The pod's fsGroup (the chart's default): kubelet puts every container in it and makes the emptyDir
# group-owned and setgid; OpenVPN writes the exporter's status files through it, without DAC_OVERRIDE.
FS_GROUP = 65532
# What OpenVPN runs with, as the chart's default securityContext: nothing but NET_ADMIN.
OPENVPN_CAPS = ["--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--security-opt", "no-new-privileges"]
MANAGEMENT_SOCKET = "/run/openvpn/udp-management.sock"
METRICS_PORT = 9234
VPN_SUBNET = ipaddress.ip_network("10.213.0.0/24")
CLIENT_CN = "pod-client"
SERVER_NAME = "pod-sim"

T = TypeVar("T")

# Figures shown at the end of the run (build times, sizes, stop time).
FIGURES: dict[str, str] = {}


require_or_skip = missing


def docker(*args: str, check: bool = True, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [DOCKER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
            f"stderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def image_size(image: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def inspect(name: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("inspect", name).stdout)
    return data[0]


# --- engine and images -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_engine() -> str:
    if not Path(DOCKER).is_file():
        require_or_skip(f"{DOCKER} not installed (run .ci/install-docker.sh)")
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    except subprocess.TimeoutExpired:
        require_or_skip("docker daemon does not answer (run .ci/install-docker.sh)")
    if info.returncode != 0:
        require_or_skip(f"no docker daemon: {info.stderr.strip()} (run .ci/install-docker.sh)")
    return info.stdout.strip()


def _build(image: str, context: Path, *build_args: str) -> float:
    args = ["build", "--network", "host", "--tag", image]
    if HOST_CA_BUNDLE.is_file():
        # pip in the build may sit behind a TLS-intercepting proxy; a secret leaves nothing in the image.
        args += ["--secret", f"id=ca,src={HOST_CA_BUNDLE}"]
    if os.environ.get("IMAGE_TEST_NO_CACHE"):
        args.append("--no-cache")
    for ba in build_args:
        args += ["--build-arg", ba]
    start = time.monotonic()
    docker(*args, str(context), timeout=900, DOCKER_BUILDKIT="1")
    return time.monotonic() - start


def _revision() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    proc = subprocess.run([git, "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


@pytest.fixture(scope="session")
def images(docker_engine: str) -> dict[str, str]:
    """Build both images with the real engine (from scratch on a fresh machine, cached after)."""
    if docker("image", "inspect", "debian:bookworm-slim", check=False).returncode != 0:
        require_or_skip("base image debian:bookworm-slim missing (run .ci/install-docker.sh)")
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    t_exp = _build(
        EXPORTER_IMAGE, REPO, f"VERSION={project_version()}", f"REVISION={_revision()}", f"CREATED={created}"
    )
    t_ovpn = _build(OPENVPN_IMAGE, REPO / "kind" / "openvpn")
    FIGURES["build exporter image"] = f"{t_exp:.1f} s"
    FIGURES["build openvpn image"] = f"{t_ovpn:.1f} s"
    FIGURES[f"size {EXPORTER_IMAGE}"] = f"{image_size(EXPORTER_IMAGE) / 1e6:.1f} MB"
    FIGURES[f"size {OPENVPN_IMAGE}"] = f"{image_size(OPENVPN_IMAGE) / 1e6:.1f} MB"
    return {"exporter": EXPORTER_IMAGE, "openvpn": OPENVPN_IMAGE}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("container image figures")
        for key, value in FIGURES.items():
            terminalreporter.write_line(f"{key}: {value}")


# --- PKI -----------------------------------------------------------------------------------------------


@dataclass
class Pki:
    server_dir: Path
    client_dir: Path


def make_pki(base: Path) -> Pki:
    """EC P-256 CA, a server (serverAuth) and a client (clientAuth) certificate, a tls-crypt key."""
    authority = Authority("pod-sim-ca")
    tc_key = tls_crypt_key()
    dirs = {}
    for role, cn in (("server", "pod-server"), ("client", CLIENT_CN)):
        d = base / role
        d.mkdir()
        (d / "ca.crt").write_text(authority.credential.cert_pem)
        # Plain file modes, as a Secret volume would present them to the containers.
        authority.issue(cn, server=role == "server").write(d / f"{role}.crt", d / f"{role}.key", private=False)
        (d / "tc.key").write_text(tc_key)
        dirs[role] = d
    return Pki(server_dir=dirs["server"], client_dir=dirs["client"])


SERVER_CONF = f"""\
dev tun
proto udp
port 1194
topology subnet
server {VPN_SUBNET.network_address} {VPN_SUBNET.netmask}
ca ca.crt
cert server.crt
key server.key
tls-crypt tc.key
dh none
disable-dco
keepalive 1 5
status /run/openvpn/udp.status 1
status-version 3
verb 3
"""

CLIENT_CONF = """\
client
dev tun
proto udp
remote 127.0.0.1 1194
nobind
remote-cert-tls server
ca ca.crt
cert client.crt
key client.key
tls-crypt tc.key
disable-dco
ifconfig-noexec
route-noexec
verb 3
"""

# Both files, as a chart prepares and configures them; only a UDP server runs, so tcp.status stays the
# empty file the init container made, and the exporter must still report the pod as up.
EXPORTER_YAML = f"""\
server_name: {SERVER_NAME}
ovpnudpstatus: /run/openvpn/udp.status
ovpntcpstatus: /run/openvpn/tcp.status
"""


# --- talking to the pod -------------------------------------------------------------------------------

# Runs inside the pod's network namespace (nsenter -n keeps the host's filesystem, so the test's own
# interpreter is used); prints status, headers and body as JSON.
_FETCH = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        out = {"status": r.status, "headers": dict(r.headers), "body": r.read().decode()}
except urllib.error.HTTPError as e:
    out = {"status": e.code, "headers": dict(e.headers), "body": e.read().decode()}
except OSError as e:
    out = {"status": 0, "headers": {}, "body": repr(e)}
print(json.dumps(out))
"""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str


def fetch_in_netns(pid: int, path: str) -> Response:
    url = f"http://127.0.0.1:{METRICS_PORT}{path}"
    proc = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", sys.executable, "-c", _FETCH, url],
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )
    data = json.loads(proc.stdout)
    return Response(int(data["status"]), {k.lower(): v for k, v in data["headers"].items()}, data["body"])


@dataclass
class Pod:
    prefix: str
    status_dir: Path
    server: str
    exporter: str
    client: str
    server_pid: int
    exporter_pid: int
    openvpn_version: str
    init_result: subprocess.CompletedProcess[str]
    containers: list[str] = field(default_factory=list)

    def get(self, path: str) -> Response:
        return fetch_in_netns(self.server_pid, path)


def remove_leftovers() -> None:
    ids = docker("ps", "--all", "--quiet", "--filter", f"label={POD_LABEL}").stdout.split()
    if ids:
        docker("rm", "--force", *ids, check=False)


def _running(name: str) -> bool:
    return bool(inspect(name)["State"]["Running"])


def _log_has(name: str, needle: str) -> bool:
    proc = docker("logs", name, check=False)
    text = proc.stdout + proc.stderr
    if needle in text:
        return True
    if not _running(name):
        raise AssertionError(f"container {name} exited:\n{text[-4000:]}")
    return False


@pytest.fixture(scope="module")
def pod(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        require_or_skip("the pod simulation needs root and nsenter to reach the pod's network namespace")
    if not Path("/dev/net/tun").exists():
        require_or_skip("/dev/net/tun missing")
    remove_leftovers()

    base = tmp_path_factory.mktemp("pod")
    pki = make_pki(base)
    (pki.server_dir / "openvpn.conf").write_text(SERVER_CONF)
    (pki.client_dir / "client.conf").write_text(CLIENT_CONF)
    exporter_yaml = base / "exporter.yaml"
    exporter_yaml.write_text(EXPORTER_YAML)
    exporter_yaml.chmod(0o644)
    # The emptyDir: a host directory that outlives every container of the pod (a docker tmpfs volume
    # would vanish when the init container exits). World-writable, and with an fsGroup kubelet gives it
    # to that group with the setgid bit, as here.
    status_dir = base / "run-openvpn"
    status_dir.mkdir()
    os.chown(status_dir, 0, FS_GROUP)
    status_dir.chmod(0o2777)

    prefix = f"ovpnexp-pod-{secrets.token_hex(3)}"
    server, exporter, client = f"{prefix}-server", f"{prefix}-exporter", f"{prefix}-client"
    common = ["--label", POD_LABEL]
    started: list[str] = []
    try:
        # init container: same image as the sidecar, fully confined.
        init = docker(
            "run", "--rm", *common, "--name", f"{prefix}-init",
            "--network", "none", "--read-only", "--user", f"{EXPORTER_UID}:{EXPORTER_UID}",
            "--cap-drop", "ALL", "--group-add", str(FS_GROUP),
            "--volume", f"{status_dir}:/run/openvpn",
            images["exporter"],
            "prepare", "--mode=0660", f"--group={FS_GROUP}", "/run/openvpn/udp.status", "/run/openvpn/tcp.status",
            check=False,
        )  # fmt: skip
        if init.returncode != 0:
            raise AssertionError(f"init container (prepare) exited {init.returncode}: {init.stderr.strip()}")

        started.append(server)
        # As the chart starts it: NET_ADMIN only, in the fsGroup, the management socket open to the
        # exporter's user only.
        docker(
            "run", "--detach", *common, "--name", server,
            "--network", "none", *OPENVPN_CAPS, "--group-add", str(FS_GROUP), "--device", "/dev/net/tun",
            "--volume", f"{pki.server_dir}:/etc/openvpn/config:ro",
            "--volume", f"{status_dir}:/run/openvpn",
            images["openvpn"],
            "--config", "/etc/openvpn/config/openvpn.conf",
            "--management", MANAGEMENT_SOCKET, "unix", "--management-client-user", "openvpn-exporter",
        )  # fmt: skip
        wait_for("the OpenVPN server to initialise", lambda: _log_has(server, "Initialization Sequence Completed"))
        server_pid = int(inspect(server)["State"]["Pid"])
        server_logs = docker("logs", server)
        logs = server_logs.stdout + server_logs.stderr
        version = next(
            (line.split("OpenVPN ", 1)[1].split()[0] for line in logs.splitlines() if " OpenVPN 2." in line),
            "",
        )

        started.append(exporter)
        docker(
            "run", "--detach", *common, "--name", exporter,
            "--network", f"container:{server}",
            "--read-only", "--user", f"{EXPORTER_UID}:{EXPORTER_UID}", "--cap-drop", "ALL",
            "--group-add", str(FS_GROUP), "--security-opt", "no-new-privileges",
            "--volume", f"{status_dir}:/run/openvpn:ro",
            "--volume", f"{exporter_yaml}:/etc/openvpn-exporter/exporter.yaml:ro",
            images["exporter"],
        )  # fmt: skip
        exporter_pid = int(inspect(exporter)["State"]["Pid"])

        def ready() -> bool:
            if not _running(exporter):
                logs = docker("logs", exporter, check=False)
                raise AssertionError(f"exporter exited:\n{logs.stdout}{logs.stderr}")
            return fetch_in_netns(server_pid, "/-/ready").status == 200

        wait_for("the exporter to answer /-/ready", ready)

        started.append(client)
        docker(
            "run", "--detach", *common, "--name", client,
            "--network", f"container:{server}", "--cap-add", "NET_ADMIN", "--device", "/dev/net/tun",
            "--volume", f"{pki.client_dir}:/etc/openvpn/config:ro",
            images["openvpn"], "--config", "/etc/openvpn/config/client.conf",
        )  # fmt: skip
        wait_for("the OpenVPN client to connect", lambda: _log_has(client, "Initialization Sequence Completed"))

        yield Pod(
            prefix=prefix,
            status_dir=status_dir,
            server=server,
            exporter=exporter,
            client=client,
            server_pid=server_pid,
            exporter_pid=exporter_pid,
            openvpn_version=version,
            init_result=init,
            containers=started,
        )
    finally:
        for name in reversed(started):
            docker("rm", "--force", name, check=False)
        remove_leftovers()
