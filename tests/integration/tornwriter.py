"""Rewrite a status file in place the way OpenVPN does, as fast as possible, alternating two contents.

OpenVPN's status writer (status.c) seeks to 0, issues one write() per line and truncates at the end; it
never renames. A reader can therefore see a mix of old and new lines, junk after END, or no END at all.

Rewrites come in bursts of BURST without a pause, then one pause of QUIET seconds: OpenVPN rewrites at
most once a second, and a writer that never pauses can only be served its last complete version (every
read of it meets a write, and no rule can tell a whole file from a mix that happens to parse). The
bursts keep the reader racing the writer most of the time; the pauses, three times the exporter's quiet
window and far shorter than OpenVPN's, are when a new version can be read.

Usage: python tornwriter.py PATH STATUS_VERSION SESSIONS_A SESSIONS_B STOPFILE
Writes until STOPFILE exists, then prints the number of rewrites.
"""

from __future__ import annotations

import os
import sys
import time

BURST = 7  # odd: the pauses fall after either content in turn
QUIET = 0.06


def render(version: int, sessions: int, epoch: int) -> list[bytes]:
    """A server status file (2.6 layout) with `sessions` rows over a handful of CNs (duplicate-cn style)."""
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
    title = "OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]"
    rows = []
    for i in range(sessions):
        cn = f"torn-client-{i % 8}"
        real = f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:{40000 + i % 20000}"
        vaddr = f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
        rows.append((cn, real, vaddr, str(1000 + i), str(2000 + i), str(i)))
    if version == 1:
        lines = [
            "OpenVPN CLIENT LIST",
            f"Updated,{local}",
            "Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since",
        ]
        lines += [f"{cn},{real},{rx},{tx},{local}" for cn, real, _v, rx, tx, _i in rows]
        lines += ["ROUTING TABLE", "Virtual Address,Common Name,Real Address,Last Ref"]
        lines += [f"{v},{cn},{real},{local}" for cn, real, v, _rx, _tx, _i in rows]
        lines += ["GLOBAL STATS", "Max bcast/mcast queue length,0", "END"]
    else:
        sep = "\t" if version == 3 else ","
        head = [
            "Common Name",
            "Real Address",
            "Virtual Address",
            "Virtual IPv6 Address",
            "Bytes Received",
            "Bytes Sent",
            "Connected Since",
            "Connected Since (time_t)",
            "Username",
            "Client ID",
            "Peer ID",
            "Data Channel Cipher",
        ]
        lines = [
            sep.join(["TITLE", title]),
            sep.join(["TIME", local, str(epoch)]),
            sep.join(["HEADER", "CLIENT_LIST", *head]),
        ]
        lines += [
            sep.join(["CLIENT_LIST", cn, real, v, "", rx, tx, local, str(epoch), "UNDEF", i, i, "AES-256-GCM"])
            for cn, real, v, rx, tx, i in rows
        ]
        lines.append(
            sep.join(
                [
                    "HEADER",
                    "ROUTING_TABLE",
                    "Virtual Address",
                    "Common Name",
                    "Real Address",
                    "Last Ref",
                    "Last Ref (time_t)",
                ]
            )
        )
        lines += [sep.join(["ROUTING_TABLE", v, cn, real, local, str(epoch)]) for cn, real, v, _rx, _tx, _i in rows]
        lines += [
            sep.join(["GLOBAL_STATS", "Max bcast/mcast queue length", "0"]),
            sep.join(["GLOBAL_STATS", "dco_enabled", "0"]),
            "END",
        ]
    return [(line + "\n").encode() for line in lines]


def main() -> int:
    path, version, a, b, stopfile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    contents = [render(version, a, int(time.time())), render(version, b, int(time.time()))]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)  # no O_TRUNC: OpenVPN rewrites in place
    rewrites = 0
    print("writing", flush=True)
    try:
        while not os.path.exists(stopfile):
            lines = contents[rewrites % 2]
            os.lseek(fd, 0, os.SEEK_SET)
            for line in lines:
                os.write(fd, line)
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))
            rewrites += 1
            if rewrites % BURST == 0:
                time.sleep(QUIET)
    finally:
        os.close(fd)
    print(rewrites, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
