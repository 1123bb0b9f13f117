"""Load on the real exporter process (loopback only): hundreds of concurrent scrapes while OpenVPN's way
of rewriting the status file (seek 0, one write per line, truncate) goes on; memory and descriptors
stay flat; abandoned requests do not leak; SIGTERM mid-load stops the process within two seconds."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from security.harness import Exporter, open_fds, process_rss_kib, start_exporter, status_v3

from tests.support.common import LOOPBACK, run_async

SCALE = float(os.environ.get("LOAD_SCALE", "1"))
CONCURRENCY = 200
REQUESTS_PER_WORKER = int(100 * SCALE)  # 200 x 100 = 20,000 requests
SESSION_COUNTS = (3, 5, 8, 13, 21)
RSS_GROWTH_LIMIT_KIB = 25 * 1024
SESSIONS_LINE = re.compile(rb"^ovpn_sessions_total (\d+)$", re.M)


class StatusWriter(threading.Thread):
    """Rewrites the file in place as OpenVPN does, cycling through SESSION_COUNTS."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.rewrites = 0
        self.texts = [
            [
                line + b"\n"
                for line in status_v3([(f"client{i}", "UNDEF", i, i) for i in range(n)]).encode().splitlines()
            ]
            for n in SESSION_COUNTS
        ]
        path.write_bytes(b"".join(self.texts[0]))

    def run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            while not self.stop.is_set():
                lines = self.texts[self.rewrites % len(self.texts)]
                os.lseek(fd, 0, os.SEEK_SET)
                for line in lines:
                    os.write(fd, line)
                os.ftruncate(fd, sum(map(len, lines)))
                self.rewrites += 1
                time.sleep(0.005)
        finally:
            os.close(fd)


@dataclass
class Tally:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    counts: Counter[int] = field(default_factory=Counter)
    parsed_fully: int = 0
    max_in_flight: int = 0
    in_flight: int = 0


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(status_line.split()[1]), headers, body


def check_metrics_body(body: bytes, tally: Tally, full: bool) -> None:
    found = SESSIONS_LINE.findall(body)
    if len(found) != 1:
        tally.errors["no ovpn_sessions_total line"] += 1
        return
    sessions = int(found[0])
    if sessions not in SESSION_COUNTS:
        tally.errors[f"session count {sessions} never written"] += 1
        return
    # One snapshot per body: as many client series as sessions, never a mix of two rewrites.
    if body.count(b"\novpn_bytes_in_total{") != sessions or b"probe_success{" not in body:
        tally.errors["inconsistent body"] += 1
        return
    if full:
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        if not {"ovpn_bytes_in", "ovpn_sessions_total", "probe_success"} <= names:
            tally.errors["unparseable body"] += 1
            return
        tally.parsed_fully += 1
    tally.counts[sessions] += 1
    tally.ok += 1


async def worker(port: int, n: int, tally: Tally, index: int, stop: asyncio.Event | None = None) -> None:
    """Keep-alive worker; every tenth one opens a new connection for each request."""
    reconnect = index % 10 == 0
    paths = [b"/metrics"] * 8 + [b"/sessions", b"/prom"]
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    for i in range(n):
        if stop is not None and stop.is_set():
            break
        path = paths[(index + i) % len(paths)]
        sent = False
        try:
            if writer is None or reconnect:
                reader, writer = await asyncio.open_connection(LOOPBACK, port)
            assert reader is not None
            tally.in_flight += 1
            sent = True
            tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: exporter\r\nAccept-Encoding: identity\r\n\r\n")
            status, _, body = await asyncio.wait_for(read_response(reader), 30)
            tally.in_flight -= 1
            sent = False
            if status != 200:
                tally.errors[f"HTTP {status}"] += 1
            elif path == b"/metrics":
                check_metrics_body(body, tally, full=i % 25 == 0)
            else:
                tally.ok += 1
            if reconnect:
                writer.close()
                writer = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            if sent:
                tally.in_flight -= 1
            tally.errors[type(exc).__name__] += 1
            writer = None
    if writer is not None:
        writer.close()


async def abandon(port: int, how: int) -> None:
    """Clients that give up: connect and leave, half a request, a request never read."""
    _, writer = await asyncio.open_connection(LOOPBACK, port)
    if how == 1:
        writer.write(b"GET /metr")
        await writer.drain()
    elif how == 2:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
    elif how == 3:
        writer.write(b"GET /prom HTTP/1.1\r\nHost: x\r\n\r\n" * 5)  # pipelined, never read
        await writer.drain()
    await asyncio.sleep(0.01)
    writer.transport.abort()  # RST instead of FIN: the rudest way out


def wait_for_fds(pid: int, baseline: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (fds := open_fds(pid)) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    return fds


def test_load_while_the_status_file_is_rewritten(tmp_path: Path) -> None:
    status = tmp_path / "server.status"
    writer = StatusWriter(status)
    config = tmp_path / "exporter.yaml"
    config.write_text(f"ovpnudpstatus: {status}\nstale_after: 0\n")
    exporter: Exporter = start_exporter(tmp_path, config)
    writer.start()
    try:
        # Warm-up: code paths, caches and allocator arenas reach their working size before measuring.
        warm = Tally()
        run_async(_many(exporter.port, 50, 40, warm))
        assert not warm.errors, warm.errors
        time.sleep(0.5)
        fds_before = wait_for_fds(exporter.pid, 0, 0)
        rss_before = process_rss_kib(exporter.pid)

        tally = Tally()
        started = time.monotonic()
        run_async(_many(exporter.port, CONCURRENCY, REQUESTS_PER_WORKER, tally))
        elapsed = time.monotonic() - started
        total = tally.ok + sum(tally.errors.values())
        rss_after = process_rss_kib(exporter.pid)

        async def abandon_all() -> None:
            await asyncio.gather(*(abandon(exporter.port, i % 4) for i in range(400)), return_exceptions=True)

        run_async(abandon_all())
        fds_after = wait_for_fds(exporter.pid, fds_before, 10)
        assert exporter.proc.poll() is None
        rss_final = process_rss_kib(exporter.pid)
        print(
            f"\nload: {total} requests, {CONCURRENCY} connections (max {tally.max_in_flight} requests in flight), "
            f"{elapsed:.1f} s, {total / elapsed:.0f} req/s, errors {sum(tally.errors.values())} {dict(tally.errors)}"
            f"\nload: /metrics bodies checked {sum(tally.counts.values())} (fully parsed {tally.parsed_fully}), "
            f"session counts seen {dict(sorted(tally.counts.items()))}, status rewrites {writer.rewrites}"
            f"\nload: RSS {rss_before / 1024:.1f} MiB after warm-up, {rss_after / 1024:.1f} MiB after load, "
            f"{rss_final / 1024:.1f} MiB after 400 abandoned requests; open fds {fds_before} before, {fds_after} after"
        )
        assert total == CONCURRENCY * REQUESTS_PER_WORKER
        assert not tally.errors, tally.errors
        assert tally.max_in_flight >= CONCURRENCY // 2
        assert len(tally.counts) >= 2, "the rewrites were never seen: the test did not test anything"
        assert writer.rewrites > 100
        assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB
        assert rss_final - rss_before < RSS_GROWTH_LIMIT_KIB
        assert fds_after <= fds_before, f"descriptors leaked: {fds_before} -> {fds_after}"

        # SIGTERM with hundreds of requests in flight: a clean exit within two seconds.
        stopped: dict[str, float] = {}

        async def load_then_term() -> None:
            stop = asyncio.Event()
            mid = Tally()
            tasks = [asyncio.create_task(worker(exporter.port, 10_000, mid, i, stop)) for i in range(CONCURRENCY)]
            while mid.ok < 2000:
                await asyncio.sleep(0.05)
            stopped["in_flight"] = mid.in_flight
            t0 = time.monotonic()
            exporter.proc.send_signal(signal.SIGTERM)
            while exporter.proc.poll() is None and time.monotonic() - t0 < 5:
                await asyncio.sleep(0.01)
            stopped["seconds"] = time.monotonic() - t0
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        run_async(load_then_term())
        print(
            f"load: SIGTERM with {stopped['in_flight']:.0f} requests in flight: exit {exporter.proc.returncode} "
            f"after {stopped['seconds']:.2f} s"
        )
        assert exporter.proc.returncode == 0
        assert stopped["seconds"] < 2.0
        assert stopped["in_flight"] >= CONCURRENCY // 2
        assert "Traceback" not in exporter.stderr()
    finally:
        writer.stop.set()
        writer.join(5)
        exporter.stop()


async def _many(port: int, concurrency: int, per_worker: int, tally: Tally) -> None:
    await asyncio.gather(*(worker(port, per_worker, tally, i) for i in range(concurrency)))
