"""The OpenVPN management interface as a source: connect, (authenticate), `version`, `status 3`, `quit`.

OpenVPN serves one management client at a time and makes every other one wait, so the socket is never
held between refreshes: a refresh connects, asks, says `quit` and closes. One deadline of `timeout` seconds
bounds the whole conversation (connect, greeting, password and every command together), so a server that
answers each step just in time, or trickles bytes, or never stops talking, costs one `timeout` at most; and
a reply is capped in bytes well under the container's memory limit.

Real-time notifications (lines starting with `>`, e.g. `>CLIENT:ESTABLISHED,...`) can arrive at any
moment, interleaved with command output: they are skipped. A command's output ends only at a line that is
exactly `END` (a common name such as `VENDOR-01` holds the substring).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import socket
import threading
import time
from pathlib import Path

from exporter.model import Snapshot
from exporter.parser import StatusParseError, parse_status
from exporter.sources.base import KeptSnapshot, Reading

PASSWORD_PROMPT = b"ENTER PASSWORD:"
PASSWORD_OK = "SUCCESS: password is correct"  # noqa: S105 (the protocol's reply, not a secret)
VERSION_PREFIX = "OpenVPN Version: "
# A status 3 reply of 100,000 sessions is ~30 MB, and its refresh peaks at ~4 times that (lines, joined
# text, parse). 40 MiB (~135,000 sessions) keeps the peak well under the chart's 256 Mi memory limit.
MAX_REPLY_BYTES = 40 * 1024 * 1024
_RECV = 65536
# OpenVPN's longest line is a few hundred bytes; a reply that is one endless line is refused early.
MAX_LINE_BYTES = 64 * 1024


class ManagementError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_target(target: str) -> tuple[str, str | tuple[str, int]]:
    """("unix", path) or ("tcp", (host, port)). `host:port` and `[v6]:port` are TCP, anything else a path."""
    host, sep, port = target.rpartition(":")
    if sep and port.isdigit() and "/" not in target and host:
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return "tcp", (host, int(port))
    return "unix", target


def version_from_reply(line: str) -> str:
    """`OpenVPN Version: OpenVPN 2.6.14 x86_64-...` -> `2.6.14`."""
    words = line[len(VERSION_PREFIX) :].split()
    return words[1] if len(words) > 1 and words[0] == "OpenVPN" else ""


class _Conversation:
    """One connection's line reader, with one deadline for the whole conversation."""

    def __init__(self, sock: socket.socket, timeout: float, where: str, deadline: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.where = where
        self.buffer = b""
        self.pos = 0  # where the unread part of `buffer` starts: lines are not sliced off one by one
        self.deadline = deadline
        self.step = ""
        self.received = 0

    def begin(self, step: str) -> None:
        """Name the step for the error messages; the deadline stays the conversation's."""
        self.step = step

    def _fill(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ManagementError(
                "timeout", f"{self.where}: no complete answer by {self.step} within {self.timeout:g}s"
            )
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(_RECV)
        except TimeoutError:
            raise ManagementError(
                "timeout", f"{self.where}: no complete answer by {self.step} within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise ManagementError("closed", f"{self.where}: connection lost during {self.step}: {exc}") from None
        if not chunk:
            raise ManagementError("closed", f"{self.where}: OpenVPN closed the connection during {self.step}")
        self.received += len(chunk)
        if self.received > MAX_REPLY_BYTES:
            raise ManagementError("malformed", f"{self.where}: reply to {self.step} is over {MAX_REPLY_BYTES} bytes")
        # The unread rest and the new chunk: at most a line plus a chunk, whatever the reply's size.
        self.buffer = self.buffer[self.pos :] + chunk
        self.pos = 0
        if len(self.buffer) > MAX_LINE_BYTES + _RECV:
            raise ManagementError(
                "malformed", f"{self.where}: a line of over {MAX_LINE_BYTES} bytes in the reply to {self.step}"
            )

    def line(self) -> str:
        while True:
            end = self.buffer.find(b"\n", self.pos)
            if end >= 0:
                raw, self.pos = self.buffer[self.pos : end], end + 1
                return raw.rstrip(b"\r").decode("utf-8", errors="replace")
            self._fill()

    def greeting(self) -> bool:
        """Wait for the greeting; True when OpenVPN asks for the password first (a prompt with no newline)."""
        while True:
            if self.buffer.startswith(PASSWORD_PROMPT, self.pos):
                self.pos += len(PASSWORD_PROMPT)
                return True
            end = self.buffer.find(b"\n", self.pos)
            if end >= 0:
                first = self.buffer[self.pos : end].rstrip(b"\r")
                if first.startswith(b">INFO:"):
                    self.pos = end + 1
                    return False
                if first.startswith(b">"):  # another notification before the greeting: skip it
                    self.pos = end + 1
                    continue
                raise ManagementError(
                    "malformed", f"{self.where}: not an OpenVPN management interface (greeting {first[:60]!r})"
                )
            # Neither a prompt nor a line: whatever this is, it is not OpenVPN.
            if len(self.buffer) - self.pos > 4096:
                raise ManagementError("malformed", f"{self.where}: not an OpenVPN management interface")
            self._fill()

    def password_answer(self) -> str:
        """The line after a password; OpenVPN 2.6 answers a wrong one only by prompting again (no newline)."""
        while True:
            if self.buffer.startswith(PASSWORD_PROMPT, self.pos):
                return PASSWORD_PROMPT.decode()
            if self.buffer.find(b"\n", self.pos) >= 0:
                return self.line()
            self._fill()

    def send(self, text: str) -> None:
        self.sock.settimeout(max(0.001, self.deadline - time.monotonic()))
        try:
            self.sock.sendall(text.encode() + b"\n")
        except TimeoutError:
            raise ManagementError(
                "timeout", f"{self.where}: could not send {self.step} within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise ManagementError("closed", f"{self.where}: connection lost sending {self.step}: {exc}") from None

    def reply(self) -> str | list[str]:
        """A command's answer: a one-line `SUCCESS:`/`ERROR:` string, or the lines before `END`."""
        lines: list[str] = []
        while True:
            line = self.line()
            if line.startswith(">"):
                continue  # a real-time notification, interleaved
            if line == "END":
                return lines
            if not lines and line.startswith(("SUCCESS:", "ERROR:")):
                return line
            lines.append(line)


class ManagementSource(KeptSnapshot):
    kind = "management"

    def __init__(self, name: str, target: str, protocol: str, password_file: str, timeout: float) -> None:
        super().__init__(name, target, protocol)
        # As for files: without a 2.7 prefix, an "auto" source's sessions are UDP, OpenVPN's default proto.
        self._default_protocol = protocol if protocol in ("tcp", "udp") else "udp"
        self.password_file = password_file
        self.timeout = timeout
        self._kind, self._address = parse_target(target)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Nothing is held open between refreshes."""

    def refresh(self) -> Reading:
        with self._lock:
            try:
                snapshot = self._ask()
            except ManagementError as failure:
                self._errors.add(failure.reason)
                self._log_transition(failure.reason, failure.message)
                return self._reading(available=False, error=failure.message)
            if snapshot != self._snapshot:
                self._keep(snapshot)
            self._fallback_update = time.time()
            self._log_transition("", "")
            return self._reading(available=True, error="")

    def _password(self) -> str:
        if not self.password_file:
            raise ManagementError(
                "auth", f"{self.target}: OpenVPN asks for a management password: set password_file for this source"
            )
        try:
            text = Path(self.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ManagementError(
                "auth", f"{self.password_file}: cannot read the management password file: {exc.strerror or exc}"
            ) from None
        # OpenVPN takes the first line of its own password file: do the same.
        return text.splitlines()[0] if text else ""

    def _connect(self, deadline: float) -> socket.socket:
        family = socket.AF_UNIX if self._kind == "unix" else socket.AF_INET
        if self._kind == "tcp":
            assert isinstance(self._address, tuple)
            family = socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            sock.connect(self._address)
        except TimeoutError:
            sock.close()
            raise ManagementError("timeout", f"{self.target}: connect timed out after {self.timeout:g}s") from None
        except FileNotFoundError:
            sock.close()
            raise ManagementError("missing", f"{self.target}: management socket does not exist (yet)") from None
        except PermissionError:
            sock.close()
            raise ManagementError("permission", f"{self.target}: permission denied on the management socket") from None
        except ConnectionRefusedError:
            sock.close()
            raise ManagementError("refused", f"{self.target}: connection refused (is OpenVPN running?)") from None
        except OSError as exc:
            sock.close()
            reason = "refused" if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK) else "unreachable"
            raise ManagementError(reason, f"{self.target}: cannot connect: {exc.strerror or exc}") from None
        return sock

    def _ask(self) -> Snapshot:
        deadline = time.monotonic() + self.timeout
        sock = self._connect(deadline)
        try:
            talk = _Conversation(sock, self.timeout, self.target, deadline)
            talk.begin("the greeting")
            if talk.greeting():
                talk.begin("the password")
                talk.send(self._password())
                while True:
                    said = talk.password_answer()
                    if said.startswith(">"):
                        continue
                    if said == PASSWORD_OK:
                        break
                    raise ManagementError("auth", f"{self.target}: management password rejected ({said[:80]!r})")
            talk.begin("`version`")
            talk.send("version")
            version = ""
            versions = talk.reply()
            for line in versions if isinstance(versions, list) else ():
                if line.startswith(VERSION_PREFIX):
                    version = version_from_reply(line)
            talk.begin("`status 3`")
            talk.send("status 3")
            answer = talk.reply()
            if isinstance(answer, str):
                raise ManagementError("malformed", f"{self.target}: `status 3` answered {answer[:80]!r}")
            talk.begin("`quit`")
            # The answers are in; a server that hangs up first has done no harm.
            with contextlib.suppress(ManagementError):
                talk.send("quit")
        finally:
            sock.close()
        try:
            snapshot = parse_status("\n".join([*answer, "END"]), self._default_protocol)
        except StatusParseError as exc:
            raise ManagementError("malformed", f"{self.target}: `status 3` reply: {exc.message}") from None
        if version and not snapshot.version:
            snapshot = dataclasses.replace(snapshot, version=version)
        return snapshot
