"""Torn reads under load: a writer rewrites a status file in place as OpenVPN does, 4 scrapers read /sessions.

    python bench/torn.py [--seconds 20] [--clients 200] [--pause 0 0.05]

The writer cycles through client sets in which clients leave and join (in hash-table order, every client
row of the same length, so that every mix of two files meets on a line boundary: the hardest case), and
rewrites the file with seek(0), one write() per line and a truncate, as fast as it can (or with a pause
between rewrites). Four threads scrape /sessions over keep-alive connections meanwhile. Every answer's
session set must be one the writer wrote: the table counts wrong sets, errors (an answer other than 200,
or a failed request), and how many different sets were served (freshness).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile import exporter, file_config

TITLE = "OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]"


def client(n: int) -> tuple[str, str, int, str]:
    """(common name, real host, real port, virtual address), of one length for every n < 10,000."""
    return (
        f"client{n:04d}",
        f"198.51.{100 + n // 100}.{100 + n % 100}",
        40000 + n,
        f"10.8.{100 + n // 100}.{100 + n % 100}",
    )


def render(clients: list[int], bump: int) -> list[bytes]:
    now = int(time.time())
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    lines = [f"TITLE\t{TITLE}", f"TIME\t{stamp}\t{now}"]
    lines.append(
        "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\t"
        "Bytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher"
    )
    for n in clients:
        cn, host, port, vaddr = client(n)
        counter = f"{bump % 1_000_000:06d}"
        lines.append(
            f"CLIENT_LIST\t{cn}\t{host}:{port}\t{vaddr}\t\t{counter}\t{counter}\t{stamp}\t{now}\tUNDEF\t{n}\t{n}\tAES-256-GCM"
        )
    lines.append("HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)")
    for n in clients:
        cn, host, port, vaddr = client(n)
        lines.append(f"ROUTING_TABLE\t{vaddr}\t{cn}\t{host}:{port}\t{stamp}\t{now}")
    lines += ["GLOBAL_STATS\tMax bcast/mcast queue length\t0", "END"]
    return [(line + "\n").encode() for line in lines]


def client_sets(count: int, size: int) -> list[list[int]]:
    rng = random.Random(19)
    sets = [rng.sample(range(10_000), size)]
    for _ in range(count - 1):
        stay = [n for n in sets[-1] if rng.random() > 0.1]
        joined = [n for n in rng.sample(range(10_000), size) if n not in sets[-1]][
            : size - len(stay) + rng.randint(-3, 3)
        ]
        new = stay + joined
        rng.shuffle(new)
        sets.append(new)
    return sets


def writer(path: str, sets: list[list[int]], pause: float, stop: threading.Event, counts: list[int]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)  # no O_TRUNC: OpenVPN rewrites in place
    rewrites = 0
    try:
        while not stop.is_set():
            os.lseek(fd, 0, os.SEEK_SET)
            for line in render(sets[rewrites % len(sets)], rewrites):
                os.write(fd, line)
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))
            rewrites += 1
            if pause:
                time.sleep(pause)
    finally:
        os.close(fd)
    counts.append(rewrites)


def scraper(port: int, allowed: set[frozenset[tuple[str, str]]], stop: threading.Event, out: dict[str, object]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen: set[frozenset[tuple[str, str]]] = set()
    scrapes = wrong = errors = 0
    while not stop.is_set():
        try:
            conn.request("GET", "/sessions")
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        scrapes += 1
        if response.status != 200:
            errors += 1
            continue
        got = frozenset((row["remotehost"], str(row["remoteport"])) for row in json.loads(body))
        seen.add(got)
        wrong += got not in allowed
    conn.close()
    with threading.Lock():
        out["scrapes"] = int(out.get("scrapes", 0)) + scrapes  # type: ignore[call-overload]
        out["wrong"] = int(out.get("wrong", 0)) + wrong  # type: ignore[call-overload]
        out["errors"] = int(out.get("errors", 0)) + errors  # type: ignore[call-overload]
        out.setdefault("seen", set()).update(seen)  # type: ignore[union-attr]


def run(workdir: str, seconds: float, size: int, pause: float) -> tuple[str, ...]:
    path = os.path.join(workdir, f"torn-{pause}.status")
    sets = client_sets(6, size)
    allowed = {frozenset((client(n)[1], str(client(n)[2])) for n in chosen) for chosen in sets}
    with open(path, "wb") as handle:
        handle.write(b"".join(render(sets[-1], 0)))
    with exporter(workdir, file_config(path)) as (_process, port):
        stop, counts, out = threading.Event(), [], {}  # type: ignore[var-annotated]
        threads = [threading.Thread(target=writer, args=(path, sets, pause, stop, counts))]
        threads += [threading.Thread(target=scraper, args=(port, allowed, stop, out)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
    seen = out.get("seen", set())
    return (f"{pause:g} s", str(counts[0]), str(out["scrapes"]), str(out["wrong"]), str(out["errors"]), str(len(seen)))  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--pause", type=float, nargs="*", default=[0.0, 0.05])
    args = parser.parse_args()
    rows = [("writer pause", "rewrites", "scrapes", "wrong sets", "errors", "sets served")]
    with tempfile.TemporaryDirectory(prefix="torn-") as workdir:
        for pause in args.pause:
            rows.append(run(workdir, args.seconds, args.clients, pause))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
