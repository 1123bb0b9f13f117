"""What the connection-churn diff costs next to the parse it follows, and what its keys weigh.

    python bench/churn.py [--sizes 10000,100000]

For each size: the parse of a generated status-version 3 file, the baseline of its sessions (one key per
session), the diff after a rewrite where 1% of the sessions left and as many arrived, and the diff after a
rewrite that changed only the byte counters (the parser shares the identity columns, so nothing is keyed).
Times are the best of three, in ms; memory is the baseline's keys and index, by tracemalloc (the columns
they are built from belong to the snapshot). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gen import StatusFile
from exporter.churn import baseline_of, diff
from exporter.parser import parse_status


def best_ms(run: Callable[[], object], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def measure(sessions: int) -> str:
    base = StatusFile(sessions)
    moved = sessions // 100
    before = parse_status(base.v3())
    table = before.session_table
    parse = best_ms(lambda: parse_status(base.v3()))
    for column in ("client_id", "connected_since", "common_name"):  # columns of the snapshot, not the keys
        getattr(table, column)
    tracemalloc.start()
    baseline = baseline_of(table)
    weight = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    keyed = best_ms(lambda: baseline_of(table))
    churned = parse_status(base.churned(ended=moved, started=moved).v3(), previous=before)
    changed = best_ms(lambda: diff(baseline, churned.session_table))
    change = diff(baseline, churned.session_table)[1]
    assert len(change.started) == len(change.ended) == moved, change
    counters = parse_status(base.v3(bump=1), previous=before)
    same = best_ms(lambda: diff(baseline, counters.session_table))
    return f"| {sessions:,} | {parse:.1f} | {keyed:.1f} | {changed:.1f} | {same:.2f} | {weight:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated session counts")
    args = parser.parse_args()
    print("| sessions | parse ms | baseline ms | diff, 1% churned ms | diff, counters only ms | baseline MB |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        print(measure(size), flush=True)


if __name__ == "__main__":
    main()
