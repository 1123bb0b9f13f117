"""The real exporter as a child process, a throw-away PKI, and status files: shared by the security and
robustness suites. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LOOPBACK = "127.0.0.1"


def require_or_skip(reason: str) -> NoReturn:
    """Skip locally; when CI is set a missing prerequisite of a required suite fails the run."""
    if os.environ.get("CI"):
        pytest.fail(f"required prerequisite missing (CI is set): {reason}", pytrace=False)
    pytest.skip(reason)


def exporter_command() -> list[str]:
    script = Path(sys.executable).with_name("openvpn-exporter")
    if script.exists():
        return [str(script)]
    found = shutil.which("openvpn-exporter")
    if found:
        return [found]
    return [sys.executable, "-m", "exporter"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------------------ PKI


@dataclass
class Identity:
    cert: Path
    key: Path


@dataclass
class PKI:
    root: Path
    ca: Path
    server: Identity
    client: Identity
    stranger: Identity  # a client certificate from a CA the exporter does not trust
    _ca_key: ec.EllipticCurvePrivateKey = field(repr=False)
    _ca_cert: x509.Certificate = field(repr=False)

    def issue_server(self, cert_path: Path, key_path: Path, common_name: str) -> None:
        """A new server certificate signed by the same CA (a renewal), written over the given files."""
        write_identity(cert_path, key_path, *_issue(common_name, self._ca_key, self._ca_cert, server=True))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _new_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    cn: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, *, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def write_identity(cert_path: Path, key_path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(root: Path) -> PKI:
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _new_ca("exporter test CA")
    (root / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    identities = {}
    for name, server in (("server", True), ("client", False)):
        identity = Identity(root / f"{name}.crt", root / f"{name}.key")
        write_identity(identity.cert, identity.key, *_issue(f"{name} one", ca_key, ca_cert, server=server))
        identities[name] = identity
    other_key, other_cert = _new_ca("someone else's CA")
    stranger = Identity(root / "stranger.crt", root / "stranger.key")
    write_identity(stranger.cert, stranger.key, *_issue("stranger", other_key, other_cert, server=False))
    return PKI(root, root / "ca.crt", identities["server"], identities["client"], stranger, ca_key, ca_cert)


def client_context(pki: PKI, identity: Identity | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if identity is not None:
        ctx.load_cert_chain(str(identity.cert), str(identity.key))
    return ctx


# ------------------------------------------------------------------------------------------ status files

V3_HEADER = (
    "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\t"
    "Bytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher"
)


def status_v3(sessions: Iterable[tuple[str, str, int, int]], epoch: int | None = None) -> str:
    """A status-version 3 text as OpenVPN 2.6 prints it; sessions are (CN, username, rx, tx)."""
    now = int(time.time()) if epoch is None else epoch
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    lines = [
        "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [MH/PKTINFO] [AEAD]",
        f"TIME\t{stamp}\t{now}",
        V3_HEADER,
    ]
    routes = []
    for i, (cn, user, rx, tx) in enumerate(sessions):
        real = f"198.51.100.{i % 250 + 1}:{10000 + i}"
        vaddr = f"10.8.{i // 250}.{i % 250 + 2}"
        lines.append(f"CLIENT_LIST\t{cn}\t{real}\t{vaddr}\t\t{rx}\t{tx}\t{stamp}\t{now}\t{user}\t{i}\t{i}\tAES-256-GCM")
        routes.append(f"ROUTING_TABLE\t{vaddr}\t{cn}\t{real}\t{stamp}\t{now}")
    lines.append("HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)")
    lines += routes
    lines += ["GLOBAL_STATS\tMax bcast/mcast queue length\t0", "GLOBAL_STATS\tdco_enabled\t0", "END"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- the process


@dataclass
class Exporter:
    """One running `openvpn-exporter`; `url` is its base URL (https when TLS is on)."""

    proc: subprocess.Popen[bytes]
    port: int
    scheme: str
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 5.0) -> float:
        """SIGTERM; returns how long the process took to exit."""
        if self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return time.monotonic() - started


def write_config(path: Path, status_files: dict[str, Path], extra: str = "") -> Path:
    lines = ["sources:"]
    for name, file in status_files.items():
        lines += [f"  - name: {name}", f"    path: {file}", "    protocol: udp"]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def start_exporter(
    workdir: Path,
    config: Path,
    *,
    web_config: Path | None = None,
    ready_client: dict[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 15.0,
) -> Exporter:
    """Start the console script on a free loopback port and wait until /-/ready answers 200."""
    scheme = "https" if ready_client is not None and "verify" in ready_client else "http"
    port = free_port()
    args = [
        *exporter_command(),
        f"--web.listen-address={LOOPBACK}:{port}",
        f"--config.file={config}",
        *(["--web.config.file", str(web_config)] if web_config else []),
        *extra_args,
    ]
    stderr_path = workdir / f"exporter-{port}.stderr"
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    exporter = Exporter(proc, port, scheme, stderr_path)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, **(ready_client or {})) as client:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"exporter exited with {proc.returncode}: {exporter.stderr()}")
            try:
                if client.get(f"{exporter.url}/-/ready").status_code == 200:
                    return exporter
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                exporter.stop()
                raise AssertionError(f"exporter not ready within {timeout}s: {exporter.stderr()}")
            time.sleep(0.05)


def run_exporter(args: Sequence[str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (for the start-up failures), capturing both streams."""
    return subprocess.run([*exporter_command(), *args], capture_output=True, text=True, timeout=timeout, check=False)


def process_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
