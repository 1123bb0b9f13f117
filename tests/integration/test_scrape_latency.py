"""Scrapes over a kept-alive connection, as Prometheus makes them, must not wait on TCP delayed ACKs.

A response written in several pieces on a socket without TCP_NODELAY stalls ~40 ms per request on a reused
connection (Nagle's algorithm waiting for the peer's delayed ACK). Needs no root: a captured status file.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import httpx
import pytest

from .exporterproc import Exporter

pytestmark = pytest.mark.integration

CAPTURED = Path(__file__).resolve().parents[1] / "fixtures" / "captured-2.6.14" / "server-udp-status-v3.log"


@pytest.mark.parametrize("path", ["/metrics", "/-/healthy"])
def test_keepalive_scrapes_are_not_delayed(path: str, exporter_binary: str, scratch: Path) -> None:
    status = scratch / "udp.status"
    shutil.copy(CAPTURED, status)
    exporter = Exporter(exporter_binary, scratch, {"ovpnudpstatus": str(status), "stale_after": 10**9})
    try:
        with httpx.Client(base_url=exporter.base, timeout=10.0) as http:
            http.get(path)  # the connection is open from here on
            times = []
            for _ in range(30):
                start = time.perf_counter()
                assert http.get(path).status_code == 200
                times.append(time.perf_counter() - start)
        median_ms = statistics.median(times) * 1000
        # (The captured file is old: a huge stale_after keeps probe_success out of the picture.)
        # Unloaded, a scrape of this file takes ~1-2 ms; a delayed-ACK stall is ~40 ms.
        assert median_ms < 25, f"median {median_ms:.1f} ms per request on a kept-alive connection"
    finally:
        exporter.stop()
