"""The real exporter as a child process, a throw-away PKI, and status files: shared by the security and
robustness suites. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.common import LOOPBACK, free_port
from tests.support.exporter_process import ExporterProcess, exporter_command
from tests.support.pki import Authority, CertPair, Credential

# ------------------------------------------------------------------------------------------------ PKI

Identity = CertPair


@dataclass
class PKI:
    root: Path
    ca: Path
    server: Identity
    client: Identity
    stranger: Identity  # a client certificate from a CA the exporter does not trust
    authority: Authority = field(repr=False)

    def issue_server(self, cert_path: Path, key_path: Path, common_name: str) -> None:
        """A new server certificate signed by the same CA (a renewal), written over the given files."""
        _server_credential(self.authority, common_name).write(cert_path, key_path)


def _server_credential(authority: Authority, common_name: str) -> Credential:
    return authority.issue(common_name, server=True, dns_names=["localhost"], ip_addresses=[LOOPBACK])


def make_pki(root: Path) -> PKI:
    root.mkdir(parents=True, exist_ok=True)
    authority = Authority("exporter test CA")
    (root / "ca.crt").write_text(authority.credential.cert_pem)
    server = _server_credential(authority, "server one").write(root / "server.crt", root / "server.key")
    client = authority.issue("client one", server=False).write(root / "client.crt", root / "client.key")
    other = Authority("someone else's CA")
    stranger = other.issue("stranger", server=False).write(root / "stranger.crt", root / "stranger.key")
    return PKI(root, root / "ca.crt", server, client, stranger, authority)


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


class Exporter(ExporterProcess):
    """One running `openvpn-exporter`; `url` is its base URL (https when TLS is on)."""

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.popen

    def stderr(self) -> str:
        return self.output()

    def stop(self, timeout: float = 5.0) -> float:  # type: ignore[override]
        """SIGTERM; returns how long the process took to exit."""
        if self.popen.poll() is not None:
            return 0.0
        started = time.monotonic()
        super().stop(timeout)
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
    web = ["--web.config.file", str(web_config)] if web_config else []
    # stdout is not kept: the security tests read what the exporter logs, on stderr.
    return Exporter(
        config,
        workdir / f"exporter-{free_port()}.stderr",
        extra_args=[*web, *extra_args],
        scheme=scheme,
        client_options=ready_client,
        stdout=subprocess.DEVNULL,
        timeout=timeout,
    )


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
