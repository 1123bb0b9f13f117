"""Benchmark: the exporter as a real process, status files of 1,000 to 100,000 sessions.

    python bench/run.py [--quick] [--exporter-cmd "openvpn-exporter"] [--rounds 1.0]

Starts one exporter on 127.0.0.1 (a free port) with one status-file source, then for each scenario
rewrites that file in place and times requests over one keep-alive connection:

- fresh: the file is rewritten (new byte counters) before every request, so each request reads,
  parses and renders;
- cached: the file is left alone, so each request should cost a stat and a send.

CPU seconds per fresh request come from the exporter's /proc/<pid>/stat (utime + stime) around each
request. RSS is read from /proc/<pid>/status. All traffic stays on loopback; every loop is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen import StatusFile, rewrite_in_place

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Scenario:
    label: str
    sessions: int
    version: int  # 1 or 3
    fresh: int  # requests per fresh series
    cached: int  # requests per cached series


@dataclass
class Result:
    scenario: Scenario
    file_bytes: int
    timings: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    rss_after: int = 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


class Client:
    """One keep-alive HTTP/1.1 connection to the exporter."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, gzip_ok: bool = False) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Accept-Encoding": "gzip" if gzip_ok else "identity"}
        try:
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
        body = response.read()
        return response.status, body, {k.lower(): v for k, v in response.getheaders()}

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def exporter_process(
    command: list[str], workdir: str, status_path: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    config = os.path.join(workdir, "exporter.yaml")
    with open(config, "w") as handle:
        handle.write(
            "server_name: bench\n"
            f"sources:\n  - name: bench\n    path: {status_path}\n    protocol: udp\n"
            "stale_after: 600\n"
        )
    port = free_port()
    argv = [*command, f"--web.listen-address=127.0.0.1:{port}", f"--config.file={config}", "--log.level=error"]
    log = open(os.path.join(workdir, "exporter.log"), "wb")  # noqa: SIM115
    # cwd is the scratch directory: `python -m exporter` must import the installed package, not a cwd copy.
    process = subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log.flush()
                with open(log.name, "rb") as errors:
                    raise SystemExit(f"exporter exited with {process.returncode}: {errors.read().decode()[-2000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/-/ready")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            if time.monotonic() > deadline:
                raise SystemExit("exporter did not become ready within 30 s")
            time.sleep(0.1)
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def timed(client: Client, path: str, gzip_ok: bool = False) -> tuple[float, bytes, dict[str, str]]:
    started = time.perf_counter()
    status, body, headers = client.get(path, gzip_ok)
    elapsed = time.perf_counter() - started
    if status != 200:
        raise SystemExit(f"GET {path} answered {status}")
    return elapsed, body, headers


def expect_sessions(body: bytes, sessions: int) -> None:
    line = f"ovpn_sessions_total {sessions}\n".encode()
    if line not in body:
        raise SystemExit(f"/metrics does not report {sessions} sessions: the benchmark would measure nothing")


def settle() -> None:
    # The exporter trusts a file's stat only once its mtime is older than a timestamp tick (50 ms).
    time.sleep(0.12)


def run_scenario(client: Client, pid: int, status_path: str, scenario: Scenario, gzip_line: bool) -> Result:
    status = StatusFile(scenario.sessions)
    render: Callable[[int], bytes] = status.v3 if scenario.version == 3 else status.v1
    data = render(0)
    result = Result(scenario, len(data))
    bump = 1

    def rewrite() -> None:
        nonlocal bump
        rewrite_in_place(status_path, render(bump))
        bump += 1

    for path in ("/metrics", "/sessions"):
        for mode in ("fresh", "cached"):
            rewrite()
            settle()
            _, body, _ = timed(client, path)  # warm: parse and render once
            if path == "/metrics":
                expect_sessions(body, scenario.sessions)
            result.sizes[path] = len(body)
            samples: list[float] = []
            cpu = 0.0
            for _ in range(scenario.fresh if mode == "fresh" else scenario.cached):
                if mode == "fresh":
                    rewrite()
                before = cpu_seconds(pid)
                elapsed, _, _ = timed(client, path)
                cpu += cpu_seconds(pid) - before
                samples.append(elapsed)
            result.timings[f"{path} {mode}"] = samples
            result.cpu[f"{path} {mode}"] = cpu / len(samples)
    if gzip_line:
        for mode in ("fresh", "cached"):
            samples = []
            rewrite()
            settle()
            timed(client, "/metrics", gzip_ok=True)
            for _ in range(scenario.fresh if mode == "fresh" else scenario.cached):
                if mode == "fresh":
                    rewrite()
                elapsed, body, headers = timed(client, "/metrics", gzip_ok=True)
                samples.append(elapsed)
            if headers.get("content-encoding") == "gzip":
                result.sizes["/metrics gzip"] = len(body)
                gzip.decompress(body)  # must be a valid gzip stream
            result.timings[f"/metrics gzip {mode}"] = samples
    result.rss_after = memory_kib(pid, "VmRSS")
    return result


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} / {percentile(values, 0.95) * 1000:.1f}"


def print_table(results: list[Result], idle_rss: int, peak_rss: int, final_rss: int) -> None:
    print()
    print("Latency in ms as median / p95; CPU in ms of exporter CPU time per fresh request.")
    print()
    print(
        "| scenario | file | /metrics fresh | /metrics cached | /sessions fresh | /sessions cached "
        "| CPU /metrics | CPU /sessions | RSS after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        t, c = r.timings, r.cpu
        print(
            f"| {r.scenario.label} | {r.file_bytes / 1e6:.1f} MB | {ms(t['/metrics fresh'])} "
            f"| {ms(t['/metrics cached'])} "
            f"| {ms(t['/sessions fresh'])} | {ms(t['/sessions cached'])} | {c['/metrics fresh'] * 1000:.0f} "
            f"| {c['/sessions fresh'] * 1000:.0f} | {r.rss_after / 1024:.0f} MB |"
        )
    print()
    for r in results:
        if "/metrics gzip fresh" in r.timings:
            plain, packed = r.sizes.get("/metrics", 0), r.sizes.get("/metrics gzip", 0)
            print(
                f"gzip at {r.scenario.label}: /metrics fresh {ms(r.timings['/metrics gzip fresh'])} ms "
                f"(identity {ms(r.timings['/metrics fresh'])}), cached {ms(r.timings['/metrics gzip cached'])} ms "
                f"(identity {ms(r.timings['/metrics cached'])}); body {plain / 1e6:.2f} MB -> {packed / 1e6:.2f} MB"
            )
    print(f"RSS: idle at start {idle_rss / 1024:.0f} MB, after the last scenario {final_rss / 1024:.0f} MB, "
          f"peak {peak_rss / 1024:.0f} MB")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--exporter-cmd",
        default=f"{shlex.quote(sys.executable)} -m exporter",
        help="command that starts the exporter (default: this Python's `-m exporter`)",
    )
    parser.add_argument("--quick", action="store_true", help="skip the 100,000-session scenario")
    parser.add_argument("--rounds", type=float, default=1.0, help="scale the number of requests per series")
    parser.add_argument("--no-gzip", action="store_true", help="skip the gzip comparison line")
    args = parser.parse_args()

    def n(count: int) -> int:
        return max(3, round(count * args.rounds))

    scenarios = [
        Scenario("v3 1,000", 1_000, 3, n(40), n(100)),
        Scenario("v3 10,000", 10_000, 3, n(25), n(60)),
        Scenario("v1 10,000", 10_000, 1, n(25), n(60)),
    ]
    if not args.quick:
        scenarios.append(Scenario("v3 100,000", 100_000, 3, n(10), n(30)))

    with tempfile.TemporaryDirectory(prefix="ovpn-bench-") as workdir:
        status_path = os.path.join(workdir, "server.status")
        rewrite_in_place(status_path, StatusFile(0).v3())
        with exporter_process(shlex.split(args.exporter_cmd), workdir, status_path) as (process, port):
            client = Client(port)
            timed(client, "/metrics")
            time.sleep(0.5)
            idle_rss = memory_kib(process.pid, "VmRSS")
            print(f"exporter pid {process.pid} on 127.0.0.1:{port}; idle RSS {idle_rss / 1024:.0f} MB", flush=True)
            results = []
            for scenario in scenarios:
                started = time.monotonic()
                gzip_line = scenario.label == "v3 10,000" and not args.no_gzip
                result = run_scenario(client, process.pid, status_path, scenario, gzip_line)
                results.append(result)
                print(f"  {scenario.label}: done in {time.monotonic() - started:.0f} s", flush=True)
            final_rss = memory_kib(process.pid, "VmRSS")
            peak_rss = memory_kib(process.pid, "VmHWM")
            client.close()
    print_table(results, idle_rss, peak_rss, final_rss)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
