"""A small OpenVPN lab for the management-interface tests: real servers, each with one real client.

Everything runs inside one network namespace this module creates (`ovpnmg<pytest pid>lab`): servers listen
on that namespace's 127.0.0.1, clients connect there, and a TCP management port exists only there. A unix
management socket is a file in this module's temp directory, usable from outside the namespace.

Names carry the pytest PID (namespace `ovpnmg<pid>...`, temp dir `ovpnexp-mgmt-<pid>-...`), so that
`clean_leftovers()` can remove what a killed earlier run left behind without touching a running suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support import netns
from tests.support.common import wait_for
from tests.support.exporter_process import stop_process
from tests.support.netns import ip_bin, openvpn_bin
from tests.support.pki import PkiDir, write_private

NS_PREFIX = "ovpnmg"
DIR_MARKER = "ovpnexp-mgmt-"
DEADLINE = 15.0
PASSWORD = "correct horse battery staple"


def clean_leftovers() -> None:
    """Processes, temp dirs and namespaces of earlier runs of this suite whose pytest process is gone."""
    netns.clean_leftovers(DIR_MARKER, NS_PREFIX)


def capability_problem() -> str | None:
    return netns.capability_problem(NS_PREFIX, "the management-interface lab")


@dataclass
class Instance:
    """One OpenVPN server with its management interface and one connected client."""

    name: str
    management: str  # what the exporter's config says: a socket path or 127.0.0.1:port
    password_file: str
    status: Path
    common_name: str
    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def logs_text(self) -> str:
        return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs if p.exists())


class Lab:
    def __init__(self) -> None:
        self.namespace = f"{NS_PREFIX}{os.getpid()}lab"
        self.root = Path(tempfile.mkdtemp(prefix=f"{DIR_MARKER}{os.getpid()}-"))
        self.instances: list[Instance] = []
        self._count = 0
        netns.add_namespace(self.namespace)
        self.pki = PkiDir(self.root, "mgmt test CA")
        self.version = netns.openvpn_version()

    def _spawn(self, config: Path, log: Path) -> subprocess.Popen[bytes]:
        # `ip netns exec` execs openvpn, so the PID is openvpn's own and SIGTERM reaches it.
        return subprocess.Popen(
            netns.netns_exec(self.namespace, [openvpn_bin() or "openvpn", "--config", str(config)]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self, kind: str, password: str | None) -> Instance:
        """kind: "unix" (socket file) or "tcp" (127.0.0.1:port inside the namespace)."""
        self._count += 1
        n = self._count
        name = f"s{n}"
        port, subnet = 1300 + n, f"10.93.{n}"
        if kind == "unix":
            management = str(self.root / f"{name}.sock")
            directive = f"management {management} unix"
        else:
            management = f"127.0.0.1:{7500 + n}"
            directive = f"management 127.0.0.1 {7500 + n}"
        password_file = ""
        if password is not None:
            password_file = str(self.root / f"{name}.pass")
            write_private(Path(password_file), password + "\n")
            directive += f" {password_file}"
        server_pair = self.pki.issue(f"server-{name}", server=True, stem=f"{name}-server")
        status = self.root / f"{name}.status"
        server_log = self.root / f"{name}.log"
        server_conf = self.root / f"{name}.conf"
        server_conf.write_text(
            "\n".join(
                [
                    "dev tun", "proto udp", "local 127.0.0.1", f"port {port}", "topology subnet",
                    f"server {subnet}.0 255.255.255.0", f"ca {self.pki.ca}",
                    f"cert {server_pair.cert}", f"key {server_pair.key}",
                    f"tls-crypt {self.pki.tls_crypt}", "dh none", "disable-dco", "keepalive 1 5",
                    f"status {status} 1", "status-version 3", directive, f"writepid {self.root / name}.pid",
                    f"log {server_log}", "verb 3",
                ]
            )
            + "\n"
        )  # fmt: skip
        server = self._spawn(server_conf, server_log)
        wait_for(
            lambda: "Initialization Sequence Completed" in server_log.read_text(errors="replace"),
            DEADLINE,
            f"OpenVPN server {name} to start",
        )
        common_name = f"mgmt-client-{name}"
        client_pair = self.pki.issue(common_name, server=False, stem=f"{name}-client")
        client_log = self.root / f"{name}-client.log"
        client_conf = self.root / f"{name}-client.conf"
        client_conf.write_text(
            "\n".join(
                [
                    "client", "dev tun", "proto udp", f"remote 127.0.0.1 {port}", "nobind",
                    "remote-cert-tls server", f"ca {self.pki.ca}",
                    f"cert {client_pair.cert}", f"key {client_pair.key}",
                    f"tls-crypt {self.pki.tls_crypt}", "disable-dco", "ifconfig-noexec", "route-noexec",
                    f"log {client_log}", "verb 3",
                ]
            )
            + "\n"
        )  # fmt: skip
        client = self._spawn(client_conf, client_log)
        instance = Instance(
            name, management, password_file, status, common_name, [server, client], [server_log, client_log]
        )
        self.instances.append(instance)
        return instance

    def wait_connected(self, instance: Instance) -> None:
        """The client is in the server's status file: an independent witness, not the source under test."""
        try:
            wait_for(
                lambda: f"CLIENT_LIST\t{instance.common_name}\t" in instance.status.read_text(errors="replace"),
                DEADLINE,
                f"client {instance.common_name} to appear in {instance.status}",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{instance.logs_text()}") from None

    def run_inside(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            netns.netns_exec(self.namespace, argv), capture_output=True, text=True, timeout=60, check=False
        )

    def close(self) -> None:
        processes = [p for i in self.instances for p in i.processes]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            stop_process(process)
        netns.run([ip_bin(), "netns", "del", self.namespace])
        shutil.rmtree(self.root, ignore_errors=True)


class MgmtLab:
    """The lab and its servers by case: unix, unix-password, tcp, tcp-password."""

    def __init__(self, lab: Lab, instances: dict[str, Instance]) -> None:
        self.lab = lab
        self.instances = instances
