"""A stand-in OpenVPN management interface that replays a captured session.

The captures in tests/fixtures/captured-2.6.14/mgmt-*.txt interleave what the client typed (lines ending
in a bare LF) with what OpenVPN answered (lines ending in CRLF). The replay server answers each command
with OpenVPN's captured bytes, serves one client at a time as OpenVPN does, and records what it was sent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "captured-2.6.14"


@dataclass
class Capture:
    greeting: bytes
    answers: dict[str, bytes]


def load_capture(name: str) -> Capture:
    data = (FIXTURES / name).read_bytes()
    greeting = b""
    answers: dict[str, bytes] = {}
    command: str | None = None
    for line in data.splitlines(keepends=True):
        if line.endswith(b"\r\n"):
            if command is None:
                greeting += line
            else:
                answers[command] = answers.get(command, b"") + line
        else:
            command = line.rstrip(b"\n").decode()
            answers.setdefault(command, b"")
    return Capture(greeting, answers)


@dataclass
class ReplayServer:
    """Serves a Capture on a unix socket path or on 127.0.0.1:<ephemeral port>."""

    capture: Capture
    unix_path: Path | None = None
    password: str | None = None
    # Hooks that let a test change what OpenVPN "says".
    before_greeting: bytes = b""
    transform: Callable[[str, bytes], bytes] = lambda command, answer: answer
    chunk: int = 0  # >0: send answers in pieces of this many bytes
    chunk_pause: float = 0.0
    silent: bool = False  # accept, then say nothing at all
    bad_password_line: bytes = b""  # a line before the new prompt (older servers: "ERROR: bad password")
    received: list[str] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0
    max_concurrent: int = 0

    def __post_init__(self) -> None:
        if self.unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(str(self.unix_path))
            self.address = str(self.unix_path)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(8)
        self._stop = threading.Event()
        self._active = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until the server has finished with its current client (it runs in its own thread)."""
        deadline = time.monotonic() + timeout
        while self._active and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            # One client at a time, like OpenVPN: the next accept waits for this one to finish.
            self.connections += 1
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)
            with conn, contextlib.suppress(OSError):
                self._talk(conn)
            self._active -= 1

    def _send(self, conn: socket.socket, data: bytes) -> None:
        if self.chunk <= 0:
            conn.sendall(data)
            return
        for i in range(0, len(data), self.chunk):
            conn.sendall(data[i : i + self.chunk])
            if self.chunk_pause:
                time.sleep(self.chunk_pause)

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        if self.silent:
            while not self._stop.is_set() and conn.recv(1024):
                pass
            return
        reader = conn.makefile("rb")
        self._send(conn, self.before_greeting)
        if self.password is not None:
            while True:
                conn.sendall(b"ENTER PASSWORD:")
                given = reader.readline()
                if not given:
                    return
                self.received.append("<password>" + given.decode().rstrip("\r\n"))
                if given.decode().rstrip("\r\n") == self.password:
                    conn.sendall(b"SUCCESS: password is correct\r\n")
                    break
                # OpenVPN 2.6 says nothing about a wrong password: it prompts again (seen on 2.6.14).
                if self.bad_password_line:
                    conn.sendall(self.bad_password_line)
        self._send(conn, self.capture.greeting)
        while True:
            line = reader.readline()
            if not line:
                self.closed_by_client += 1
                return
            command = line.decode().rstrip("\r\n")
            self.received.append(command)
            if command == "quit":
                # OpenVPN closes its side on quit; the client must have closed or close now.
                if not conn.recv(1):
                    self.closed_by_client += 1
                return
            answer = self.capture.answers.get(command, f"ERROR: unknown command [{command}]\r\n".encode())
            self._send(conn, self.transform(command, answer))
