"""A small, independent reader of OpenVPN server status files and `status 3` output.

The lab checks itself with this (and the tests compare the exporter against the server's own view), so it
is deliberately written apart from the exporter's parser: a bug shared by both would hide itself.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    common_name: str
    real_address: str
    virtual_address: str
    username: str | None  # None: the format has no such column (v1)
    client_id: str | None
    bytes_received: int
    bytes_sent: int

    @property
    def real_host(self) -> str:
        # 2.6 writes "1.2.3.4:port" for IPv4 and a bare address for native IPv6.
        host, sep, _port = self.real_address.rpartition(":")
        return host if sep and "." in host else self.real_address

    @property
    def real_port(self) -> str:
        host, sep, port = self.real_address.rpartition(":")
        return port if sep and "." in host else ""


@dataclass(frozen=True)
class Snapshot:
    title: str | None
    epoch: int | None
    rows: list[Row]
    complete: bool


def parse(text: str) -> Snapshot:
    """Parse a v1, v2 or v3 server status text (version detected from its first line)."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    complete = bool(lines) and lines[-1] == "END" and lines.count("END") == 1
    if lines and lines[0] == "OpenVPN CLIENT LIST":
        return _parse_v1(lines, complete)
    sep = "\t" if lines and lines[0].startswith("TITLE\t") else ","
    title: str | None = None
    epoch: int | None = None
    header: list[str] = []
    raw_rows: list[list[str]] = []
    for line in lines:
        fields = line.split(sep)
        kind = fields[0]
        if kind == "TITLE":
            title = fields[1]
        elif kind == "TIME":
            epoch = int(fields[2])
        elif kind == "HEADER" and len(fields) > 1 and fields[1] == "CLIENT_LIST":
            header = fields[2:]
        elif kind == "CLIENT_LIST":
            raw_rows.append(fields[1:])
    rows = []
    for raw in raw_rows:
        if len(raw) != len(header):
            raise ValueError(f"column count mismatch in {raw!r}")
        rec = dict(zip(header, raw, strict=True))
        rows.append(
            Row(
                common_name=rec["Common Name"],
                real_address=rec["Real Address"],
                virtual_address=rec["Virtual Address"],
                username=rec["Username"],
                client_id=rec["Client ID"],
                bytes_received=int(rec["Bytes Received"]),
                bytes_sent=int(rec["Bytes Sent"]),
            )
        )
    return Snapshot(title, epoch, rows, complete)


def _parse_v1(lines: list[str], complete: bool) -> Snapshot:
    section = ""
    clients: list[list[str]] = []
    routes: dict[str, str] = {}
    for line in lines[1:]:
        if line in ("ROUTING TABLE", "GLOBAL STATS", "END"):
            section = line
            continue
        if line.startswith(("Updated,", "Common Name,", "Virtual Address,")):
            continue
        fields = line.split(",")
        if section == "" and len(fields) == 5:
            clients.append(fields)
        elif section == "ROUTING TABLE" and len(fields) == 4:
            vaddr, _cn, real, _ref = fields
            # The IPv4 route is the virtual address; IPv6 and iroutes are extra routes of the same client.
            if "." in vaddr and "/" not in vaddr and ":" not in vaddr:
                routes[real] = vaddr
    rows = [Row(cn, real, routes.get(real, ""), None, None, int(rx), int(tx)) for cn, real, rx, tx, _since in clients]
    return Snapshot(None, None, rows, complete)


def read(path: Path) -> Snapshot:
    return parse(path.read_text(encoding="utf-8", errors="replace"))


def management_status(sock_path: Path, timeout: float = 5.0) -> Snapshot:
    """Ask the server itself (`status 3` over its unix management socket): the truth the tests compare to."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        buf = b""
        sock.sendall(b"status 3\n")
        out: list[str] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("management interface closed before END")
            buf += chunk
            *done, buf = buf.split(b"\n")
            for raw in done:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                # Greeting and real-time notifications start with '>'; they are not part of the answer.
                if line.startswith(">"):
                    continue
                out.append(line)
                if line == "END":
                    sock.sendall(b"quit\n")
                    return parse("\n".join(out) + "\n")
