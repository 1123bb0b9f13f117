"""A small OpenVPN lab for the management-interface tests: real servers, each with one real client.

Everything runs inside one network namespace this module creates (`ovpnmg<pytest pid>lab`): servers listen
on that namespace's 127.0.0.1, clients connect there, and a TCP management port exists only there. A unix
management socket is a file in this module's temp directory, usable from outside the namespace.

Names carry the pytest PID (namespace `ovpnmg<pid>...`, temp dir `ovpnexp-mgmt-<pid>-...`), so that
`clean_leftovers()` can remove what a killed earlier run left behind without touching a running suite.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NS_PREFIX = "ovpnmg"
DIR_MARKER = "ovpnexp-mgmt-"
_NS_RE = re.compile(rf"^{NS_PREFIX}(\d+)")
_DIR_RE = re.compile(rf"{re.escape(DIR_MARKER)}(\d+)-")
DEADLINE = 15.0
PASSWORD = "correct horse battery staple"


def _ip() -> str:
    return shutil.which("ip") or "/usr/sbin/ip"


def _openvpn() -> str | None:
    return shutil.which("openvpn") or next(
        (p for p in ("/usr/sbin/openvpn", "/sbin/openvpn") if os.access(p, os.X_OK)), None
    )


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(check: Callable[[], object], what: str, timeout: float = DEADLINE) -> object:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def clean_leftovers() -> None:
    """Processes, temp dirs and namespaces of earlier runs of this suite whose pytest process is gone."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        match = _DIR_RE.search(cmdline)
        if match and int(match.group(1)) != me and not _alive(int(match.group(1))):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
    for directory in Path(tempfile.gettempdir()).glob(f"{DIR_MARKER}*"):
        match = _DIR_RE.match(directory.name + "-")
        if match and int(match.group(1)) != me and not _alive(int(match.group(1))):
            shutil.rmtree(directory, ignore_errors=True)
    for line in _run(_ip(), "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NS_RE.match(name)
        if match and int(match.group(1)) != me and not _alive(int(match.group(1))):
            _run(_ip(), "netns", "del", name)


def capability_problem() -> str | None:
    """Why no real OpenVPN can run here, or None. Tries the real operations, not just permissions."""
    if os.geteuid() != 0:
        return "the management-interface lab needs root (network namespaces and tun devices)"
    if _openvpn() is None:
        return "openvpn is not installed (apt-get install openvpn)"
    if not shutil.which("ip"):
        return "iproute2 (`ip`) is not installed"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun does not exist"
    probe = f"{NS_PREFIX}{os.getpid()}probe"
    result = _run(_ip(), "netns", "add", probe)
    if result.returncode != 0:
        return f"cannot create a network namespace: {result.stderr.strip()}"
    try:
        result = _run(_ip(), "-n", probe, "tuntap", "add", "dev", "probe0", "mode", "tun")
        if result.returncode != 0:
            return f"cannot create a tun device: {result.stderr.strip()}"
    finally:
        _run(_ip(), "netns", "del", probe)
    return None


class Pki:
    """An EC P-256 CA with server and client certificates and a tls-crypt key, made in-process."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        now = dt.datetime.now(dt.UTC)
        self._validity = (now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mgmt test CA")])
        ca = self._builder(self._name, self._key.public_key()).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
        self.ca = directory / "ca.crt"
        self.ca.write_bytes(ca.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        self.tls_crypt = directory / "tc.key"
        hexkey = secrets.token_bytes(256).hex()
        body = "\n".join(hexkey[i : i + 32] for i in range(0, len(hexkey), 32))
        self._private(
            self.tls_crypt, f"-----BEGIN OpenVPN Static key V1-----\n{body}\n-----END OpenVPN Static key V1-----\n"
        )

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._validity[0])
            .not_valid_after(self._validity[1])
        )

    @staticmethod
    def _private(path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)

    def issue(self, stem: str, common_name: str, *, server: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # remote-cert-tls checks the key usage as well as the extended key usage.
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert_path, key_path = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._private(key_path, pem.decode())
        return cert_path, key_path


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
        _run(_ip(), "netns", "del", self.namespace)
        result = _run(_ip(), "netns", "add", self.namespace)
        if result.returncode != 0:
            raise RuntimeError(f"ip netns add {self.namespace}: {result.stderr.strip()}")
        _run(_ip(), "-n", self.namespace, "link", "set", "lo", "up")
        self.pki = Pki(self.root)
        self.version = (_run(_openvpn() or "openvpn", "--version").stdout.split() or ["", ""])[1]

    def _spawn(self, config: Path, log: Path) -> subprocess.Popen[bytes]:
        # `ip netns exec` execs openvpn, so the PID is openvpn's own and SIGTERM reaches it.
        return subprocess.Popen(
            [_ip(), "netns", "exec", self.namespace, _openvpn() or "openvpn", "--config", str(config)],
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
            Pki._private(Path(password_file), password + "\n")
            directive += f" {password_file}"
        cert, key = self.pki.issue(f"{name}-server", f"server-{name}", server=True)
        status = self.root / f"{name}.status"
        server_log = self.root / f"{name}.log"
        server_conf = self.root / f"{name}.conf"
        server_conf.write_text(
            "\n".join(
                [
                    "dev tun", "proto udp", "local 127.0.0.1", f"port {port}", "topology subnet",
                    f"server {subnet}.0 255.255.255.0", f"ca {self.pki.ca}", f"cert {cert}", f"key {key}",
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
            f"OpenVPN server {name} to start",
        )
        common_name = f"mgmt-client-{name}"
        ccert, ckey = self.pki.issue(f"{name}-client", common_name, server=False)
        client_log = self.root / f"{name}-client.log"
        client_conf = self.root / f"{name}-client.conf"
        client_conf.write_text(
            "\n".join(
                [
                    "client", "dev tun", "proto udp", f"remote 127.0.0.1 {port}", "nobind",
                    "remote-cert-tls server", f"ca {self.pki.ca}", f"cert {ccert}", f"key {ckey}",
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
                f"client {instance.common_name} to appear in {instance.status}",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{instance.logs_text()}") from None

    def run_inside(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_ip(), "netns", "exec", self.namespace, *argv], capture_output=True, text=True, timeout=60, check=False
        )

    def close(self) -> None:
        processes = [p for i in self.instances for p in i.processes]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        _run(_ip(), "netns", "del", self.namespace)
        shutil.rmtree(self.root, ignore_errors=True)


class MgmtLab:
    """The lab and its servers by case: unix, unix-password, tcp, tcp-password."""

    def __init__(self, lab: Lab, instances: dict[str, Instance]) -> None:
        self.lab = lab
        self.instances = instances
