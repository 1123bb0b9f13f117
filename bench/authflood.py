"""Load figure: good scrapes while loops send wrong passwords, with basic auth on.

    python bench/authflood.py [--attackers 0,60,120] [--seconds 15] [--cost 10] [--exporter-cmd CMD]

Starts one exporter on 127.0.0.1 (a free port) with a web config holding one bcrypt user and a status
file of 1,000 sessions. For each number of attackers, that many threads loop `GET /metrics` with a
wrong password (a fresh password each time, so nothing is cached), while one scraper sends the right
password every 0.25 s on a kept-alive connection, as Prometheus does, and its answer times are
recorded. Prints a table: the scraper's median, 95th percentile and slowest answer, and what the
attackers got (401 after a check, 429 refused because the checks were busy). Traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter

import bcrypt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen import StatusFile
from run import exporter_process, percentile

USER, PASSWORD = "prometheus", "the right one"


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()}


def attacker(port: int, stop: threading.Event, answers: Counter[str], lock: threading.Lock, index: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            conn.request("GET", "/metrics", headers=basic(f"guess-{index}-{attempt}"))
            response = conn.getresponse()
            response.read()
            outcome = str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            answers[outcome] += 1
    conn.close()


def scrape_under_attack(port: int, attackers: int, seconds: float) -> tuple[list[float], Counter[str], int]:
    """The good scraper's answer times, the attackers' answers, and the good scrapes that failed."""
    stop, lock = threading.Event(), threading.Lock()
    answers: Counter[str] = Counter()
    threads = [
        threading.Thread(target=attacker, args=(port, stop, answers, lock, i), daemon=True) for i in range(attackers)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0 if attackers else 0)  # let the flood build up
    good = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    timings: list[float] = []
    failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        good.request("GET", "/metrics", headers=basic(PASSWORD))
        response = good.getresponse()
        response.read()
        if response.status == 200:
            timings.append(time.perf_counter() - started)
        else:
            failed += 1
        time.sleep(0.25)
    good.close()
    stop.set()
    for thread in threads:
        thread.join(60)
    return timings, answers, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attackers", default="0,60,120", help="comma-separated numbers of attacking loops")
    parser.add_argument("--seconds", type=float, default=15.0, help="good scraping per row (default 15)")
    parser.add_argument("--cost", type=int, default=10, help="bcrypt cost of the user's hash (default 10)")
    parser.add_argument("--exporter-cmd", default=f"{sys.executable} -m exporter")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="authflood-") as workdir:
        status = os.path.join(workdir, "bench.status")
        with open(status, "wb") as handle:
            handle.write(StatusFile(1000).v3())
        web = os.path.join(workdir, "web.yml")
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(args.cost)).decode()
        with open(web, "w") as handle:
            handle.write(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
        command = [*shlex.split(args.exporter_cmd), f"--web.config.file={web}"]
        with exporter_process(command, workdir, status) as (_, port):
            print(f"bcrypt cost {args.cost}, {args.seconds:g} s of good scrapes every 0.25 s per row\n")
            print(f"{'attackers':>9} {'good':>5} {'median':>9} {'p95':>9} {'slowest':>9} {'failed':>6}   attackers got")
            for count in (int(n) for n in args.attackers.split(",")):
                timings, answers, failed = scrape_under_attack(port, count, args.seconds)
                got = ", ".join(f"{n} x {k}" for k, n in sorted(answers.items())) or "-"
                print(
                    f"{count:>9} {len(timings):>5} {statistics.median(timings) * 1000:>7.1f}ms "
                    f"{percentile(timings, 0.95) * 1000:>7.1f}ms {max(timings) * 1000:>7.1f}ms {failed:>6}   {got}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
