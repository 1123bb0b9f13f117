"""Fixture paths, prerequisites that must not silently skip in CI, free ports and polling."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CAPTURED = FIXTURES / "captured-2.6.14"
RECONSTRUCTED = FIXTURES / "reconstructed"
LOOPBACK = "127.0.0.1"
# The keys of a /sessions row, in the original exporter's order (SPEC 2.3).
SESSION_KEYS = [
    "server",
    "protocol",
    "p1uniqueid",
    "p2uniqueid",
    "state",
    "remotehost",
    "remoteport",
    "remoteid",
    "remotets",
    "established",
    "bytesin",
    "bytesout",
    "packetsin",
    "packetsout",
]
T = TypeVar("T")


def missing(reason: str) -> NoReturn:
    """Skip locally; when CI is set a missing prerequisite of a required suite fails the run instead."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def tool(name: str, hint: str, *also: Path) -> str:
    """The path of command `name`: on PATH, else the first of `also` that exists; else `missing`, with
    `hint` saying how to install it."""
    found = shutil.which(name) or next((str(path) for path in also if path.is_file()), None)
    if found is None:
        missing(f"{name} is not installed ({hint})")
    return found


def require_or_skip(condition: bool, reason: str) -> None:
    """`missing(reason)` unless `condition` holds."""
    if not condition:
        missing(reason)


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """Poll `check` until it returns something truthy; never sleep a fixed time for a real process."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError) as exc:  # files half-written, sockets not up yet
            last_exc = exc
        if time.monotonic() > deadline:
            suffix = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{suffix}")
        time.sleep(interval)


def management_block(path: Path, command: str) -> str:
    """The reply to one command in a captured management session (lines up to and including END)."""
    lines = path.read_bytes().decode().split("\n")
    start = lines.index(command) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip("\r") == "END")
    return "\n".join(lines[start : end + 1]) + "\n"


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on a thread of its own.

    The browser tests drive Chromium through Playwright's sync API, which can leave an event loop marked
    as running on the main thread; a plain asyncio.run later in the same session would then refuse to start.
    """
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="run-async")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]
