"""Benchmark: the exporter as a real process, status files of 1,000 to 100,000 sessions.

    python bench/run.py [--quick] [--exporter-cmd "openvpn-exporter"] [--compare-cmd CMD] [--rounds 1.0]

Starts one exporter on 127.0.0.1 (a free port) with one status-file source, then for each scenario
rewrites that file in place and times requests over one keep-alive connection:

- fresh: the file is rewritten (new byte counters) before every request, so each request reads,
  parses and renders;
- cached: the file is left alone, so each request should cost a stat and a send.

CPU seconds per fresh request come from the exporter's /proc/<pid>/stat (utime + stime) around each
request. RSS is read from /proc/<pid>/status: idle (after one scrape of an empty file), after the fresh
/metrics and /sessions series of each scenario, and the scenario's peak (VmHWM, reset before each).

The exporter runs with its bytecode compiled, as a pip install or the image leaves it: a first start
fills a bytecode cache in the scratch directory, the measured start reads it. (Compiling on every start,
as PYTHONDONTWRITEBYTECODE makes it, leaves a few MB of compiler garbage in the heap.)

--compare-cmd starts a second exporter (another checkout, say) beside the first and runs every series
on both, one after the other, so that two versions are compared on the same machine at the same time.
All traffic stays on loopback; every loop is bounded.
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
    rss_fresh: int = 0  # KiB, after the fresh /metrics and /sessions series
    rss_after: int = 0  # KiB, at the end of the scenario
    rss_peak: int = 0  # KiB, VmHWM over the scenario


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


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so that each scenario reports its own peak."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")


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
    command: list[str], workdir: str, status_path: str, env: dict[str, str] | None = None
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
    process = subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
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
    reset_peak(pid)
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
    # Memory after fresh scrapes: one more rewrite, then both views of it, as a Prometheus scrape and a
    # /sessions reader would leave the exporter (both renderings of the newest snapshot kept).
    rewrite()
    timed(client, "/metrics")
    timed(client, "/sessions")
    result.rss_fresh = memory_kib(pid, "VmRSS")
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
    result.rss_peak = memory_kib(pid, "VmHWM")
    return result


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} / {percentile(values, 0.95) * 1000:.1f}"


def mb(kib: int) -> str:
    return f"{kib / 1024:.1f} MB"


def print_table(title: str, results: list[Result], idle_rss: int) -> None:
    print()
    print(f"## {title}")
    print()
    print("Latency in ms as median / p95; CPU in ms of exporter CPU time per fresh request.")
    print()
    print(
        "| scenario | file | /metrics fresh | /metrics cached | /sessions fresh | /sessions cached "
        "| CPU /metrics | CPU /sessions |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        t, c = r.timings, r.cpu
        print(
            f"| {r.scenario.label} | {r.file_bytes / 1e6:.1f} MB | {ms(t['/metrics fresh'])} "
            f"| {ms(t['/metrics cached'])} "
            f"| {ms(t['/sessions fresh'])} | {ms(t['/sessions cached'])} | {c['/metrics fresh'] * 1000:.0f} "
            f"| {c['/sessions fresh'] * 1000:.0f} |"
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
    print()
    print(f"Memory (RSS): idle {mb(idle_rss)}.")
    print()
    print("| scenario | after fresh /metrics and /sessions | at the end of the scenario | peak in the scenario |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r.scenario.label} | {mb(r.rss_fresh)} | {mb(r.rss_after)} | {mb(r.rss_peak)} |")


@dataclass
class Exporter:
    label: str
    command: list[str]
    status_path: str
    pid: int = 0
    client: Client | None = None
    idle_rss: int = 0
    results: list[Result] = field(default_factory=list)


def compiled_env(workdir: str) -> dict[str, str]:
    """The exporter's environment, with a bytecode cache of its own that it may write."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "pycache")
    return env


def warm_bytecode(exporter: Exporter, workdir: str, env: dict[str, str]) -> None:
    """Start and stop the exporter once, so that every module it imports has its bytecode cached."""
    with exporter_process(exporter.command, workdir, exporter.status_path, env) as (_, port):
        client = Client(port)
        timed(client, "/metrics")
        timed(client, "/sessions")
        client.close()


def start(stack: contextlib.ExitStack, label: str, command: str, workdir: str, env: dict[str, str]) -> Exporter:
    """Start one exporter with its bytecode cached, and measure its idle RSS after one scrape."""
    directory = os.path.join(workdir, label)
    os.mkdir(directory)
    exporter = Exporter(label, shlex.split(command), os.path.join(directory, "server.status"))
    rewrite_in_place(exporter.status_path, StatusFile(0).v3())
    warm_bytecode(exporter, directory, env)
    process, port = stack.enter_context(exporter_process(exporter.command, directory, exporter.status_path, env))
    exporter.pid, exporter.client = process.pid, stack.enter_context(contextlib.closing(Client(port)))
    timed(exporter.client, "/metrics")
    time.sleep(0.5)
    exporter.idle_rss = memory_kib(process.pid, "VmRSS")
    print(f"{label}: pid {process.pid} on 127.0.0.1:{port}; idle RSS {mb(exporter.idle_rss)}", flush=True)
    return exporter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--exporter-cmd",
        default=f"{shlex.quote(sys.executable)} -m exporter",
        help="command that starts the exporter (default: this Python's `-m exporter`)",
    )
    parser.add_argument("--compare-cmd", default="", help="a second exporter to run every series on, alternately")
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

    commands = [("exporter", args.exporter_cmd)] + ([("compared", args.compare_cmd)] if args.compare_cmd else [])
    with tempfile.TemporaryDirectory(prefix="ovpn-bench-") as workdir, contextlib.ExitStack() as stack:
        env = compiled_env(workdir)
        exporters = [start(stack, label, command, workdir, env) for label, command in commands]
        for scenario in scenarios:
            for exporter in exporters:
                assert exporter.client is not None
                started = time.monotonic()
                gzip_line = scenario.label == "v3 10,000" and not args.no_gzip
                result = run_scenario(exporter.client, exporter.pid, exporter.status_path, scenario, gzip_line)
                exporter.results.append(result)
                print(f"  {exporter.label} {scenario.label}: done in {time.monotonic() - started:.0f} s", flush=True)
    for (label, command), exporter in zip(commands, exporters, strict=True):
        print_table(f"{label}: {command}", exporter.results, exporter.idle_rss)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
