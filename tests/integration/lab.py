"""The lab: real OpenVPN 2.6 servers and clients inside network namespaces this module creates.

Layout (one lab per status-version):

* namespace `<prefix>-lab` holds every OpenVPN process. The servers listen on 127.0.0.1 of that namespace,
  clients connect from distinct 127.0.0.X addresses, so all VPN transport stays on that namespace's loopback.
* each client's tun device is moved by its `up` script into the client's own namespace `<prefix>-cN`, so
  traffic sent from there really crosses the tunnel to the server's tun device in the lab namespace.

Nothing here ever talks to an address outside these namespaces. Every path the processes see lives under a
temp directory named with MARKER and the pytest PID, and every namespace starts with NS_PREFIX and that PID:
that is how `clean_leftovers()` recognises what a killed earlier run left behind, and leaves a concurrently
running suite alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import netns
from tests.support.common import wait_for
from tests.support.exporter_process import stop_process
from tests.support.netns import ip_bin, openvpn_bin
from tests.support.pki import CertPair, PkiDir

from . import statusfile

MARKER = "ovpnexp-it-"
NS_PREFIX = "ovpnit"

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def clean_leftovers() -> list[str]:
    """What a killed earlier run of this suite left behind (processes, namespaces, temp dirs), removed."""
    return netns.clean_leftovers(MARKER, NS_PREFIX)


def capability_problem() -> str | None:
    return netns.capability_problem(NS_PREFIX, "the OpenVPN lab")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.popen, STOP_TIMEOUT)


@dataclass
class Server:
    name: str
    proto: str  # "udp" | "tcp"
    port: int
    subnet: str  # first three octets of the /24, e.g. "10.8.0"
    status: Path
    mgmt: Path
    proc: Proc
    userpass: bool

    @property
    def tunnel_ip(self) -> str:
        return f"{self.subnet}.1"

    def snapshot(self) -> statusfile.Snapshot:
        return statusfile.read(self.status)

    def truth(self) -> statusfile.Snapshot:
        return statusfile.management_status(self.mgmt)


@dataclass
class Client:
    name: str
    common_name: str
    server: Server
    local_ip: str
    namespace: str
    username: str | None
    proc: Proc
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.common_name}_{self.server.proto}"


class Lab:
    def __init__(self, status_version: int, root: Path | None = None) -> None:
        self.status_version = status_version
        self.owner = os.getpid()
        self.root = root or Path(tempfile.mkdtemp(prefix=f"{MARKER}{self.owner}-v{status_version}-"))
        self.ns_base = f"{NS_PREFIX}{self.owner}v{status_version}"
        self.ns = f"{self.ns_base}-lab"
        self.pki = PkiDir(self.root / "pki")
        self.servers: dict[str, Server] = {}
        self.clients: dict[str, Client] = {}
        self._procs: list[Proc] = []
        self._namespaces: list[str] = []
        self._client_seq = 0
        self._server_cert: CertPair = self.pki.issue("openvpn-exporter-lab-server", server=True)
        self.ipv6 = Path("/proc/sys/net/ipv6").exists()
        self._add_namespace(self.ns)
        self.version = netns.openvpn_version()

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _add_namespace(self, name: str) -> None:
        netns.add_namespace(name)
        self._namespaces.append(name)

    def netns_exec(self, ns: str, argv: list[str]) -> list[str]:
        return netns.netns_exec(ns, argv)

    def _spawn(self, name: str, ns: str, config: Path, log: Path) -> Proc:
        out = open(config.with_suffix(".out"), "wb")  # noqa: SIM115 - lives as long as the process
        popen = subprocess.Popen(
            self.netns_exec(ns, [openvpn_bin() or "openvpn", "--config", str(config)]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
        )
        out.close()
        proc = Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def wait_initialized(self, what: Proc | Client) -> None:
        proc = what.proc if isinstance(what, Client) else what

        def ready() -> bool:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_text()[-3000:]}")
            return "Initialization Sequence Completed" in proc.log_text()

        try:
            wait_for(ready, READY_TIMEOUT, f"{proc.name} to initialise")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{proc.log_text()[-3000:]}") from None

    # -- servers ----------------------------------------------------------------------------------------------
    def start_server(self, name: str, proto: str, port: int, subnet: str, *, userpass: bool = False) -> Server:
        d = self.root / name
        d.mkdir()
        status = d / "status.log"
        mgmt = d / "mgmt.sock"
        lines = [
            f"dev ovs-{name}",
            "dev-type tun",
            f"proto {'tcp-server' if proto == 'tcp' else 'udp'}",
            "local 127.0.0.1",
            f"port {port}",
            "topology subnet",
            f"server {subnet}.0 255.255.255.0",
            f"ca {self.pki.ca}",
            f"cert {self._server_cert.cert}",
            f"key {self._server_cert.key}",
            "dh none",
            f"tls-crypt {self.pki.tls_crypt}",
            "disable-dco",
            "duplicate-cn",
            "keepalive 1 5",
            f"status {status} 1",
            f"status-version {self.status_version}",
            f"writepid {d / 'openvpn.pid'}",
            f"log {d / 'openvpn.log'}",
            f"management {mgmt} unix",
            "verb 3",
        ]
        if self.ipv6 and proto == "udp":
            # A second route per client in the routing table: v1 readers must join the IPv4 one.
            lines.append(f"server-ipv6 fd00:{subnet.split('.')[1]}::/64")
        if userpass:
            verify = d / "verify.sh"
            # Accept any user whose password file has two lines; the Username column is what matters.
            verify.write_text('#!/bin/sh\n[ "$(wc -l < "$1")" -ge 2 ] && exit 0\nexit 1\n')
            verify.chmod(0o755)
            # No username-as-common-name: the client label is built from the certificate CN.
            lines += ["script-security 2", f"auth-user-pass-verify {verify} via-file"]
        config = d / "server.conf"
        config.write_text("\n".join(lines) + "\n")
        proc = self._spawn(f"server {name}", self.ns, config, d / "openvpn.log")
        self.wait_initialized(proc)
        server = Server(name, proto, port, subnet, status, mgmt, proc, userpass)
        self.servers[name] = server
        return server

    def stop_server(self, server: Server) -> None:
        server.proc.stop()

    # -- clients ----------------------------------------------------------------------------------------------
    def start_client(
        self, common_name: str, server: Server, *, username: str | None = None, wait: bool = True
    ) -> Client:
        self._client_seq += 1
        n = self._client_seq
        name = f"c{n}"
        d = self.root / name
        d.mkdir()
        ns = f"{self.ns_base}-{name}"
        self._add_namespace(ns)
        cert = self.pki.issue(common_name, server=False)
        # Distinct source addresses make remotehost meaningful: each session has its own Real Address.
        local_ip = f"127.0.{1 if server.proto == 'udp' else 2}.{n}"
        up = d / "up.sh"
        ip = ip_bin()
        # OpenVPN calls: up <dev> <tun-mtu> <link-mtu> <local-ip> <netmask> init. Moving the device into the
        # client's namespace keeps the lab namespace free of a second 10.x address on the same subnet.
        up.write_text(
            "#!/bin/sh\nset -e\n"
            f'{ip} link set dev "$1" netns {ns}\n'
            f'{ip} -n {ns} addr add "$4/$5" dev "$1"\n'
            f'{ip} -n {ns} link set dev "$1" up\n'
        )
        up.chmod(0o755)
        lines = [
            "client",
            f"dev ovc{n}",
            "dev-type tun",
            f"proto {'tcp-client' if server.proto == 'tcp' else 'udp'}",
            f"remote 127.0.0.1 {server.port}",
            f"local {local_ip}",
            "lport 0",
            "remote-cert-tls server",
            f"ca {self.pki.ca}",
            f"cert {cert.cert}",
            f"key {cert.key}",
            f"tls-crypt {self.pki.tls_crypt}",
            "disable-dco",
            "connect-retry 1 1",
            "script-security 2",
            "ifconfig-noexec",
            "route-noexec",
            f"up {up}",
            f"writepid {d / 'openvpn.pid'}",
            f"log {d / 'openvpn.log'}",
            "verb 3",
        ]
        if server.proto == "udp":
            # Tell the server at once when the client stops, as a well-configured client does.
            lines.append("explicit-exit-notify 1")
        if server.userpass:
            creds = d / "creds"
            fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{username or common_name}\nlab-password-{n}\n")
            lines.append(f"auth-user-pass {creds}")
        config = d / "client.conf"
        config.write_text("\n".join(lines) + "\n")
        proc = self._spawn(f"client {name} ({common_name!r} on {server.name})", self.ns, config, d / "openvpn.log")
        client = Client(name, common_name, server, local_ip, ns, username if server.userpass else None, proc)
        self.clients[name] = client
        if wait:
            self.wait_initialized(proc)
        return client

    def stop_client(self, client: Client) -> None:
        client.proc.stop()
        self.clients.pop(client.name, None)

    def connected(self, server: Server) -> list[Client]:
        return [c for c in self.clients.values() if c.server is server]

    # -- traffic ----------------------------------------------------------------------------------------------
    def start_echo(self) -> Proc:
        """UDP+TCP echo in the lab namespace, so traffic through a tunnel comes back (bytes in AND out grow)."""
        script = Path(__file__).with_name("netcheck.py")
        log = self.root / "echo.log"
        out = open(log, "wb")  # noqa: SIM115
        popen = subprocess.Popen(
            self.netns_exec(self.ns, [sys.executable, str(script), "echo", "--marker", str(self.root)]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        proc = Proc("echo", popen, log)
        self._procs.append(proc)
        wait_for(lambda: "listening" in proc.log_text(), READY_TIMEOUT, "the echo service")
        return proc

    def send_through(self, client: Client, nbytes: int) -> int:
        """Send nbytes from the client's namespace to its server's tunnel address and read the echo back."""
        script = Path(__file__).with_name("netcheck.py")
        res = subprocess.run(
            self.netns_exec(
                client.namespace,
                [sys.executable, str(script), "send", client.server.proto, client.server.tunnel_ip, str(nbytes)],
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if res.returncode != 0:
            raise RuntimeError(f"traffic through {client.name} failed: {res.stdout}{res.stderr}")
        return int(res.stdout.strip().splitlines()[-1])

    # -- readiness --------------------------------------------------------------------------------------------
    def wait_status_settled(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every server's status file lists exactly its connected clients, each with an address."""

        def settled() -> bool:
            for server in self.servers.values():
                if server.proc.popen.poll() is not None:
                    continue
                snap = server.snapshot()
                want = sorted(c.common_name for c in self.connected(server))
                have = sorted(r.common_name for r in snap.rows if r.virtual_address)
                if not snap.complete or have != want or len(snap.rows) != len(want):
                    return False
            return True

        wait_for(settled, timeout, "status files to list every connected client")

    # -- teardown ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        for proc in reversed(self._procs):
            with contextlib.suppress(ProcessLookupError):
                if proc.popen.poll() is None:
                    proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self._procs:
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(STOP_TIMEOUT)
        for ns in reversed(self._namespaces):
            netns.run([ip_bin(), "netns", "del", ns])
        shutil.rmtree(self.root, ignore_errors=True)
