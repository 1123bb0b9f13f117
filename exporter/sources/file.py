"""A status file that OpenVPN rewrites in place.

OpenVPN rewrites the file with seek(0), one write() per line and a final truncate, never a rename, so a
reader can catch it half-written. A read is accepted only when two back-to-back reads agree and the
parser finds exactly one END as the last line; otherwise it is retried after a short pause, and in the
end the last complete snapshot keeps being served while the failure is counted.

An unchanged file (same inode, size, mtime and ctime) is not read at all: a scrape then costs a stat.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from typing import BinaryIO

from exporter.parser import StatusParseError, parse_status
from exporter.sources.base import KeptSnapshot, Reading

log = logging.getLogger("openvpn_exporter")

RETRIES = 3
RETRY_PAUSE = 0.005
# File timestamps tick with the kernel's coarse clock (a few ms): a file modified this recently may
# still be changing within the same tick, so its stat key is not trusted for caching yet.
SETTLE_SECONDS = 0.05


class _ReadFailure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class FileSource(KeptSnapshot):
    kind = "file"

    def __init__(self, name: str, path: str, protocol: str, max_bytes: int) -> None:
        super().__init__(name, path, protocol)
        self.path = path
        # Without a 2.7 prefix, an "auto" source's sessions are UDP: OpenVPN's default `proto`.
        self._default_protocol = protocol if protocol in ("tcp", "udp") else "udp"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._key: tuple[int, ...] | None = None
        self._error = ""
        self._last_logged = ""

    def close(self) -> None:
        """Nothing is held open between refreshes."""

    def refresh(self) -> Reading:
        with self._lock:
            try:
                return self._refresh()
            except _ReadFailure as failure:
                self._errors.add(failure.reason)
                return self._reading(available=False, error=failure.message)

    def _refresh(self) -> Reading:
        before = self._stat()
        key = (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns)
        if key == self._key:
            self._fallback_update = before.st_mtime
            return self._reading(available=True, error="")

        failure: StatusParseError | None = None
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(RETRY_PAUSE)
            data = self._read()
            if not self._reads_again(data):
                failure = StatusParseError("torn", "status file changed while it was read")
                continue
            try:
                snapshot = parse_status(data, self._default_protocol, self._snapshot)
            except StatusParseError as exc:
                failure = exc
                continue
            after = self._stat()
            settled = (after.st_ino, after.st_size, after.st_mtime_ns) == (
                before.st_ino,
                len(data),
                before.st_mtime_ns,
            ) and time.time() - after.st_mtime > SETTLE_SECONDS
            # Only a file that did not move during the read, and is not still within a timestamp tick
            # of its last write, is trusted to be unchanged when its stat is.
            self._key = key if settled else None
            self._keep(snapshot)
            self._fallback_update = after.st_mtime
            return self._reading(available=True, error="")

        assert failure is not None
        self._errors.add(failure.reason)
        self._key = None
        kept = " (serving the last complete read)" if self._snapshot is not None else ""
        return self._reading(available=True, error=f"{self.path}: {failure.message}{kept}")

    def _stat(self) -> os.stat_result:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise self._failure(exc, "status file does not exist (yet)") from None
        if not stat.S_ISREG(st.st_mode):
            raise _ReadFailure("not_regular", f"{self.path}: not a regular file")
        if st.st_size > self.max_bytes:
            raise _ReadFailure(
                "too_large", f"{self.path}: {st.st_size} bytes is over max_file_bytes ({self.max_bytes})"
            )
        return st

    def _read(self) -> bytes:
        """The whole file, up to max_bytes + 1.

        Sized by fstat: one read of exactly the file's length, not a max_bytes buffer allocated and
        shrunk (which costs more than the read itself at 64 MiB); a file still growing is read on to EOF.
        """
        with self._open() as handle:
            try:
                wanted = min(os.fstat(handle.fileno()).st_size, self.max_bytes) + 1
                data = handle.read(wanted)
                if len(data) == wanted and wanted <= self.max_bytes:
                    data += handle.read(self.max_bytes + 1 - wanted)
            except OSError as exc:
                raise self._failure(exc, "status file disappeared while being read") from None
        if len(data) > self.max_bytes:
            raise _ReadFailure("too_large", f"{self.path}: grew over max_file_bytes ({self.max_bytes})")
        return data

    def _reads_again(self, data: bytes) -> bool:
        """The second read of the double read. A whole second copy compared with one memcmp is faster
        than any chunked compare; it lives only for the comparison."""
        return self._read() == data

    def _failure(self, exc: OSError, gone: str) -> _ReadFailure:
        """An OSError on the status file, as the reason counted and the line logged; `gone` is what a
        missing file means at that point."""
        if isinstance(exc, FileNotFoundError):
            return _ReadFailure("missing", f"{self.path}: {gone}")
        if isinstance(exc, PermissionError):
            return _ReadFailure("permission", f"{self.path}: permission denied")
        return _ReadFailure("unreadable", f"{self.path}: {exc.strerror or exc}")

    def _open(self) -> BinaryIO:
        try:
            # O_NONBLOCK: a FIFO swapped in after the stat must not hang the scrape.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise self._failure(exc, "status file disappeared while being read") from None
        handle = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            handle.close()
            raise _ReadFailure("not_regular", f"{self.path}: not a regular file")
        return handle

    def _reading(self, *, available: bool, error: str) -> Reading:
        if error != self._last_logged:
            if error:
                log.warning("source %s: %s", self.name, error)
            elif self._last_logged:
                log.info("source %s: %s read again", self.name, self.path)
            self._last_logged = error
        return super()._reading(available=available, error=error)
