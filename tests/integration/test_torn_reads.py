"""Torn reads: OpenVPN rewrites its status file in place; no scrape may ever show a half-written file.

A writer process rewrites a large status file the way OpenVPN does (seek 0, one write() per line, truncate)
in bursts as fast as it can with short pauses between them (see tornwriter), alternating between two
contents with different session counts, while the test scrapes the exporter thousands of times. Needs no
root and no OpenVPN: only the exporter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from . import tornwriter
from .exporterproc import Exporter

pytestmark = pytest.mark.integration

SESSIONS_A = 800
SESSIONS_B = 1000
# Scrapes per status-version (4000 in all) and a time bound; the count is normally reached well before.
SCRAPES = {1: 1000, 2: 1000, 3: 2000}
TIME_BUDGET = 30.0
# A loaded machine may not reach SCRAPES within TIME_BUDGET; below this many the race proves too little.
MIN_SCRAPES = 300
_SESSIONS_LINE = re.compile(rb"^ovpn_sessions_total (\S+)$", re.M)


@pytest.mark.parametrize("status_version", [1, 2, 3], ids=["status-v1", "status-v2", "status-v3"])
def test_scrapes_never_see_a_torn_file(status_version: int, exporter_binary: str, scratch: Path) -> None:
    status = scratch / "torn.status"
    stopfile = scratch / "stop"
    # The exporter first sees a complete file (the "before"), then the writer starts racing it.
    status.write_bytes(b"".join(tornwriter.render(status_version, SESSIONS_A, int(time.time()))))
    exporter = Exporter(exporter_binary, scratch, {"ovpnudpstatus": str(status), "stale_after": 300})
    # One connection per scrape: the race under test is file against reader, not HTTP keep-alive
    # timing (test_scrape_latency covers that).
    exporter.http = httpx.Client(base_url=exporter.base, timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0))
    writer: subprocess.Popen[bytes] | None = None
    try:
        exporter.poll_metrics(lambda s: s.value("ovpn_sessions_total") == SESSIONS_A, what="the first content")
        writer = subprocess.Popen(
            [
                sys.executable,
                tornwriter.__file__,
                str(status),
                str(status_version),
                str(SESSIONS_A),
                str(SESSIONS_B),
                str(stopfile),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == b"writing"
        seen: dict[int, int] = {}
        failures: list[str] = []
        scrapes = 0
        deadline = time.monotonic() + TIME_BUDGET
        while scrapes < SCRAPES[status_version] and time.monotonic() < deadline:
            resp = exporter.http.get("/metrics")
            scrapes += 1
            m = _SESSIONS_LINE.search(resp.content)
            if resp.status_code != 200 or not m:
                failures.append(f"scrape {scrapes}: HTTP {resp.status_code}, {resp.text[:200]!r}")
                continue
            count = int(float(m.group(1)))
            seen[count] = seen.get(count, 0) + 1
            if count not in (SESSIONS_A, SESSIONS_B):
                failures.append(f"scrape {scrapes}: {resp.text}")
            if scrapes % 100 == 0:
                # The JSON is built from the same snapshot: it must be whole too.
                sessions = exporter.http.get("/sessions")
                if sessions.status_code != 200 or len(sessions.json()) not in (SESSIONS_A, SESSIONS_B):
                    failures.append(
                        f"/sessions after scrape {scrapes}: HTTP {sessions.status_code}, "
                        f"{len(sessions.json()) if sessions.status_code == 200 else '-'} rows"
                    )
        stopfile.touch()
        out, _ = writer.communicate(timeout=15)
        rewrites = int(out.split()[-1])
        print(f"status-v{status_version}: {scrapes} scrapes, {rewrites} rewrites, counts seen {seen}")
        assert not failures, "\n".join(failures[:5])
        assert set(seen) <= {SESSIONS_A, SESSIONS_B}, f"session counts seen: {seen}"
        assert scrapes >= MIN_SCRAPES, f"only {scrapes} scrapes in {TIME_BUDGET:.0f}s"
        # The writer must really have been racing the reader, and the exporter following the file.
        assert rewrites >= 100, f"the writer managed only {rewrites} rewrites"
        assert set(seen) == {SESSIONS_A, SESSIONS_B}, f"the exporter never followed the file: {seen}"
    finally:
        stopfile.touch()
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait(5)
        exporter.stop()
        if os.environ.get("TORN_SHOW_LOG"):
            print(exporter.output())
