"""Small helpers shared by the test tree."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURED = FIXTURES / "captured-2.6.14"
RECONSTRUCTED = FIXTURES / "reconstructed"


def require_or_skip(condition: bool, reason: str) -> None:
    """Skip when a required tool is missing, except in CI, where a skipped required suite is a failure."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def management_block(path: Path, command: str) -> str:
    """The reply to one command in a captured management session (lines up to and including END)."""
    lines = path.read_bytes().decode().split("\n")
    start = lines.index(command) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip("\r") == "END")
    return "\n".join(lines[start : end + 1]) + "\n"
