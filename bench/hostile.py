"""Hostile clients and sources against the exporter as a real process: prints one table of figures.

    python bench/hostile.py [--sessions 100000] [--only NAME ...]

Scenarios (all traffic on loopback, every loop bounded):

- slow-readers: 30 clients send `GET /sessions` and never read; the RSS they add.
- concurrent: 50 concurrent /sessions plus 200 concurrent /metrics; peak RSS, failures.
- half-open: 100 connections that never finish their request head; when the server has closed them all,
  and the slowest scrape answered meanwhile.
- slow-management: a management interface answering each step in 1.5 s, `timeout: 2s`, next to a status
  file; 4 concurrent scrapes: each one's time, and whether each had the file's sessions.
- sigterm: SIGTERM while a management refresh is blocked (an interface that never answers, `timeout: 10s`):
  how long the process takes to exit.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen import StatusFile

EXPORTER = [os.path.join(os.path.dirname(sys.executable), "openvpn-exporter")]
ROWS: list[tuple[str, str, str]] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def get(port: int, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextlib.contextmanager
def exporter(workdir: str, config: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    path = os.path.join(workdir, "exporter.yaml")
    with open(path, "w") as handle:
        handle.write(config)
    port = free_port()
    argv = [*EXPORTER, f"--web.listen-address=127.0.0.1:{port}", f"--config.file={path}", "--log.level=error"]
    log = open(os.path.join(workdir, "exporter.log"), "ab")  # noqa: SIM115
    process = subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if get(port, "/-/ready", 2)[0] == 200:
                    break
            if process.poll() is not None:
                raise SystemExit(f"exporter exited with {process.returncode}")
            time.sleep(0.1)
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def file_config(status: str) -> str:
    return f"server_name: hostile\nsources:\n  - name: file\n    path: {status}\n    protocol: udp\nstale_after: 0\n"


def slow_readers(workdir: str, status: str) -> None:
    with exporter(workdir, file_config(status)) as (process, port):
        get(port, "/sessions")
        time.sleep(1)
        before = rss_mb(process.pid)
        socks = []
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /sessions HTTP/1.1\r\nHost: bench\r\n\r\n")
            socks.append(sock)
        time.sleep(5)
        after = rss_mb(process.pid)
        status_code, _ = get(port, "/metrics")
        for sock in socks:
            sock.close()
    ROWS.append(("slow-readers", "RSS added by 30 clients that never read /sessions", f"{after - before:.0f} MB"))
    ROWS.append(("slow-readers", "RSS before / with them", f"{before:.0f} / {after:.0f} MB"))
    ROWS.append(("slow-readers", "a /metrics scrape meanwhile", str(status_code)))


def sample_peak(pid: int, stop: threading.Event, out: list[float]) -> None:
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, rss_mb(pid))
        time.sleep(0.01)
    out.append(peak)


def concurrent(workdir: str, status: str) -> None:
    with exporter(workdir, file_config(status)) as (process, port):
        get(port, "/sessions")
        get(port, "/metrics")
        stop, peak = threading.Event(), []  # type: ignore[var-annotated]
        sampler = threading.Thread(target=sample_peak, args=(process.pid, stop, peak))
        sampler.start()
        codes: list[int] = []

        def one(path: str) -> None:
            try:
                codes.append(get(port, path, 60)[0])
            except (OSError, http.client.HTTPException):
                codes.append(0)

        threads = [threading.Thread(target=one, args=("/sessions",)) for _ in range(50)]
        threads += [threading.Thread(target=one, args=("/metrics",)) for _ in range(200)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.monotonic() - started
        stop.set()
        sampler.join()
    failed = sum(code != 200 for code in codes)
    ROWS.append(("concurrent", "peak RSS, 50 /sessions + 200 /metrics at once", f"{peak[0]:.0f} MB"))
    ROWS.append(("concurrent", "answers not 200 / all done in", f"{failed} / {took:.1f} s"))


def half_open(workdir: str, status: str) -> None:
    with exporter(workdir, file_config(status)) as (_process, port):
        socks = []
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n")  # never the blank line
            sock.setblocking(False)
            socks.append(sock)
        started = time.monotonic()
        open_socks, last_close, slowest, failures = set(range(100)), 0.0, 0.0, 0
        while open_socks and time.monotonic() - started < 40:
            for i in list(open_socks):
                try:
                    if socks[i].recv(4096) == b"":
                        open_socks.discard(i)
                        last_close = time.monotonic() - started
                except BlockingIOError:
                    pass
                except OSError:
                    open_socks.discard(i)
                    last_close = time.monotonic() - started
            begun = time.monotonic()
            try:
                failures += get(port, "/metrics", 10)[0] != 200
            except (OSError, http.client.HTTPException):
                failures += 1
            slowest = max(slowest, time.monotonic() - begun)
            time.sleep(0.25)
        for sock in socks:
            sock.close()
    closed = f"{100 - len(open_socks)} of 100 within {last_close:.1f} s"
    ROWS.append(("half-open", "half-open connections closed by the server", closed))
    ROWS.append(("half-open", "slowest /metrics meanwhile / failures", f"{slowest * 1000:.0f} ms / {failures}"))


def fake_management(step_delay: float, silent: bool) -> tuple[socket.socket, int]:
    """A management interface on loopback that takes `step_delay` per answer (or never answers)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    status3 = (
        "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu\nTIME\t2026-01-01 00:00:00\t{now}\n"
        "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\t"
        "Bytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n"
        "HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\n"
        "GLOBAL_STATS\tMax bcast/mcast queue length\t0\nEND\n"
    )

    def serve(conn: socket.socket) -> None:
        with conn:
            if silent:
                time.sleep(30)
                return
            time.sleep(step_delay)
            conn.sendall(b">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info\n")
            buffer = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    time.sleep(step_delay)
                    if line == b"version":
                        conn.sendall(b"OpenVPN Version: OpenVPN 2.6.14 x86_64\nManagement Version: 5\nEND\n")
                    elif line == b"status 3":
                        conn.sendall(status3.format(now=int(time.time())).encode())
                    else:
                        return

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, int(listener.getsockname()[1])


def slow_management(workdir: str, status: str) -> None:
    listener, mport = fake_management(1.5, silent=False)
    sessions = StatusFile(1000)
    small = os.path.join(workdir, "small.status")
    with open(small, "wb") as handle:
        handle.write(sessions.v3())
    config = file_config(small) + f"  - name: mgmt\n    management: 127.0.0.1:{mport}\n    timeout: 2s\n"
    results: list[tuple[float, int]] = []
    with exporter(workdir, config.replace("stale_after: 0\n", "") + "stale_after: 0\n") as (_process, port):

        def one() -> None:
            begun = time.monotonic()
            code, body = get(port, "/sessions", 30)
            rows = len(json.loads(body)) if code == 200 else -1
            results.append((time.monotonic() - begun, rows))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    listener.close()
    times = ", ".join(f"{t:.1f}" for t, _ in sorted(results))
    with_file = sum(rows == 1000 for _, rows in results)
    ROWS.append(("slow-management", "4 concurrent scrapes took (s)", times))
    ROWS.append(("slow-management", "scrapes with the file's 1,000 sessions", f"{with_file} of 4"))


def sigterm(workdir: str, status: str) -> None:
    listener, mport = fake_management(0, silent=True)
    config = f"server_name: hostile\nsources:\n  - name: mgmt\n    management: 127.0.0.1:{mport}\n    timeout: 10s\n"
    with exporter(workdir, config) as (process, port):
        scrape = threading.Thread(target=_quiet_get, args=(port,), daemon=True)
        scrape.start()
        time.sleep(1.0)  # the refresh this scrape started is now blocked on the silent interface
        begun = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
            took = f"{time.monotonic() - begun:.2f} s (exit {process.returncode})"
        except subprocess.TimeoutExpired:
            took = "over 10 s"
    listener.close()
    ROWS.append(("sigterm", "exit after SIGTERM during a blocked 10 s refresh", took))


def _quiet_get(port: int) -> None:
    with contextlib.suppress(OSError, http.client.HTTPException):
        get(port, "/metrics", 30)


SCENARIOS: dict[str, Callable[[str, str], None]] = {
    "slow-readers": slow_readers,
    "concurrent": concurrent,
    "half-open": half_open,
    "slow-management": slow_management,
    "sigterm": sigterm,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostile-") as workdir:
        status = os.path.join(workdir, "server.status")
        with open(status, "wb") as handle:
            handle.write(StatusFile(args.sessions).v3())
        for name in args.only:
            SCENARIOS[name](workdir, status)
            print(f"{name}: done", file=sys.stderr, flush=True)
    width = max(len(what) for _, what, _ in ROWS)
    print(f"{'scenario':<16} {'measure':<{width}}  value")
    for scenario, what, value in ROWS:
        print(f"{scenario:<16} {what:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
