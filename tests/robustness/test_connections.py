"""Bounded cost per connection, on the real exporter process (loopback only): half-open connections are
closed, readers that never read pin no body, a connection cap refuses clearly, running out of file
descriptors logs a line per interval (not a traceback per accept), and SIGTERM does not wait for a
blocked management refresh. The figures at 100,000 sessions come from bench/hostile.py."""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exporter.serving import HEADER_TIMEOUT, MAX_CONNECTIONS
from tests.support.common import LOOPBACK
from tests.support.exporter_process import ExporterProcess, exporter_command

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from gen import StatusFile


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def exporter(tmp_path: Path, config: str, command: list[str] | None = None) -> Iterator[ExporterProcess]:
    path = tmp_path / "exporter.yaml"
    path.write_text(config)
    process = ExporterProcess(path, tmp_path / "exporter.log", command=command)
    try:
        yield process
    finally:
        process.stop()


def status_config(tmp_path: Path, sessions: int) -> str:
    status = tmp_path / "server.status"
    status.write_bytes(StatusFile(sessions).v3())
    return f"sources:\n  - name: file\n    path: {status}\nstale_after: 0\n"


def connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=5)


def test_half_open_connections_are_closed_while_scrapes_answer(tmp_path: Path) -> None:
    with exporter(tmp_path, status_config(tmp_path, 10)) as process:
        socks = [connect(process.port) for _ in range(20)]
        for sock in socks:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never the blank line that ends the head
        assert process.http.get("/metrics").status_code == 200
        deadline = time.monotonic() + HEADER_TIMEOUT + 10
        for sock in socks:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(1024) == b"", "the server answered a request it never fully received"
            sock.close()
        assert process.http.get("/metrics").status_code == 200


def test_readers_that_never_read_pin_no_copy_of_the_body(tmp_path: Path) -> None:
    with exporter(tmp_path, status_config(tmp_path, 20_000)) as process:
        body = process.http.get("/sessions").content
        assert len(body) > 4 << 20
        time.sleep(0.5)
        before = rss_kib(process.pid)
        socks = []
        for _ in range(20):
            sock = connect(process.port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /sessions HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        time.sleep(2)
        grown_kib = rss_kib(process.pid) - before
        assert process.http.get("/metrics").status_code == 200
        for sock in socks:
            sock.close()
    # Twenty copies of the body would be 20 x len(body); each reader may pin a chunk and a transport buffer.
    assert grown_kib * 1024 < 2 * len(body), f"{grown_kib} KiB for 20 readers of a {len(body)}-byte body"


def test_out_of_descriptors_logs_a_line_per_interval_and_recovers(tmp_path: Path) -> None:
    # 64 descriptors: the exporter's own use plus a few connections, then accept() fails with EMFILE.
    command = ["prlimit", "--nofile=64", *exporter_command()]
    with exporter(tmp_path, status_config(tmp_path, 10), command=command) as process:
        socks = []
        with contextlib.suppress(OSError):
            for _ in range(100):
                socks.append(connect(process.port))
        time.sleep(3)
        for sock in socks:
            sock.close()
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{process.url}/metrics", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the exporter did not serve again once descriptors were free"
            time.sleep(0.2)
        log = process.output()
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "socket.accept() out of system resource" in line]
    assert 1 <= len(lines) <= 2, log[-2000:]


def test_sigterm_does_not_wait_for_a_blocked_management_refresh(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind((LOOPBACK, 0))
    silent.listen(8)  # accepts (by the kernel) and never says a word
    port = silent.getsockname()[1]
    config = f"sources:\n  - name: mgmt\n    management: {LOOPBACK}:{port}\n    timeout: 10s\n"
    try:
        with exporter(tmp_path, config) as process:
            with contextlib.suppress(httpx.HTTPError):
                process.http.get("/metrics", timeout=0.5)  # starts a refresh that blocks for 10 s
            started = time.monotonic()
            process.popen.terminate()
            process.popen.wait(10)
            took = time.monotonic() - started
            assert process.popen.returncode == 0
    finally:
        silent.close()
    assert took < 2.0


def test_connections_over_the_cap_get_a_clear_refusal(tmp_path: Path) -> None:
    with exporter(tmp_path, status_config(tmp_path, 10)) as process:
        socks = [connect(process.port) for _ in range(MAX_CONNECTIONS + 8)]
        try:
            response = httpx.get(f"{process.url}/metrics", timeout=5)
        finally:
            for sock in socks:
                sock.close()
        assert response.status_code == 503
        time.sleep(0.5)
        assert process.http.get("/metrics").status_code == 200


def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from exporter import serving

    monkeypatch.setattr(serving, "WRITE_TIMEOUT", 1.0)
    body = b"x" * (32 << 20)

    async def big(request: Request) -> serving.SharedBodyResponse:
        return serving.SharedBodyResponse(body)

    app = Starlette(routes=[Route("/big", big)])
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, http=serving.BoundedH11Protocol, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((LOOPBACK, port))
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(3)  # never reading: the server's writes stay paused past the write timeout
        received = 0
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        sock.close()
        assert received < len(body), "the whole body arrived: the stalled connection was not dropped"
        with httpx.Client(timeout=10) as client:
            assert len(client.get(f"http://{LOOPBACK}:{port}/big").content) == len(body)
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def test_a_tls_client_that_never_finishes_its_handshake_is_closed(tmp_path: Path) -> None:
    from security.harness import client_context, make_pki

    pki = make_pki(tmp_path / "pki")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n")
    config = tmp_path / "exporter.yaml"
    config.write_text(status_config(tmp_path, 10))
    process = ExporterProcess(
        config,
        tmp_path / "exporter.log",
        extra_args=[f"--web.config.file={web}"],
        scheme="https",
        client_options={"verify": client_context(pki)},
    )
    try:
        sock = connect(process.port)  # TCP only: no ClientHello ever
        sock.settimeout(HEADER_TIMEOUT + 10)
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < HEADER_TIMEOUT + 5
        sock.close()
        assert process.http.get("/-/healthy").status_code == 200
    finally:
        process.stop()
