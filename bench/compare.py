"""Two versions of the exporter side by side: fresh /metrics and /sessions at 10,000 sessions.

    python bench/compare.py /path/to/other/checkout [--rounds 40] [--settle 0.05]

`/path/to/other/checkout` holds an `exporter/` package (e.g. `git worktree add /tmp/base HEAD~1`). Both run
as real processes at once, each with its own status file; every round rewrites each file (new byte counters)
and times one request to each exporter, the order alternating, so that a busy machine slows both alike.
Prints the median wall time and the mean CPU time (the exporter's utime + stime) per request.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen import StatusFile, rewrite_in_place
from run import Client, cpu_seconds, expect_sessions, exporter_process, settle, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SESSIONS = 10_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", help="a checkout holding the other exporter/ package")
    parser.add_argument("--rounds", type=int, default=40, help="requests per exporter and line")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds between a rewrite and its request (default 0: the request right after the rewrite, "
        "which waits out the file source's 20 ms quiet window; 0.05 times the read, parse and render alone, "
        "as a scrape that does not follow a rewrite within 20 ms sees it)",
    )
    args = parser.parse_args()
    roots = {"other": os.path.abspath(args.other), "this": ROOT}
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with contextlib.ExitStack() as stack:
        exporters = {}
        for side, root in roots.items():
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"ovpn-compare-{side}-"))
            path = os.path.join(workdir, "server.status")
            rewrite_in_place(path, StatusFile(0).v3())
            os.environ["PYTHONPATH"] = root  # the exporter process imports this side's package
            process, port = stack.enter_context(exporter_process([sys.executable, "-m", "exporter"], workdir, path))
            exporters[side] = (process.pid, Client(port), path)
        for version in (3, 1):
            status = StatusFile(SESSIONS)
            render = status.v3 if version == 3 else status.v1
            for _, client, path in exporters.values():
                rewrite_in_place(path, render(0))
                settle()
                expect_sessions(timed(client, "/metrics")[1], SESSIONS)
            for endpoint in ("/metrics", "/sessions"):
                for round_ in range(args.rounds):
                    for side in sorted(exporters, reverse=round_ % 2 == 1):
                        pid, client, path = exporters[side]
                        rewrite_in_place(path, render(1 + round_))
                        time.sleep(args.settle)
                        before = cpu_seconds(pid)
                        elapsed = timed(client, endpoint)[0]
                        line = f"v{version} {SESSIONS:,} {endpoint} fresh"
                        samples.setdefault((line, side), []).append((elapsed, cpu_seconds(pid) - before))
    print(f"{'':28} {'wall ms (median)':>24} {'cpu ms (mean)':>24}")
    print(f"{'':28} {'other':>8} {'this':>8} {'ratio':>6} {'other':>8} {'this':>8} {'ratio':>6}")
    for line in dict.fromkeys(key for key, _ in samples):
        other, this = samples[(line, "other")], samples[(line, "this")]
        walls = [statistics.median(e for e, _ in s) * 1000 for s in (other, this)]
        cpus = [statistics.mean(c for _, c in s) * 1000 for s in (other, this)]
        print(
            f"{line:28} {walls[0]:8.1f} {walls[1]:8.1f} {walls[1] / walls[0]:6.2f}"
            f" {cpus[0]:8.1f} {cpus[1]:8.1f} {cpus[1] / cpus[0] if cpus[0] else float('nan'):6.2f}"
        )
    print(f"({args.rounds} rounds per line, the two exporters alternating)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
