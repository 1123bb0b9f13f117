"""A status file that OpenVPN rewrites in place.

OpenVPN rewrites the file with seek(0), one write() per line and a final truncate, never a rename, so a
reader can catch it half-written, and a mix of new first lines and old last lines that meets on a line
boundary is well formed. Two rules keep such a mix out, each enough for most cases and together for all
that the test replays:

- a quiet window: the file is read only once it has not been modified (mtime and ctime, in ns) for
  QUIET_SECONDS, and the read counts only if its stat is the same after it. A rewrite takes far less than
  that, so a read that starts in a quiet moment sees one whole version. A file still being rewritten is
  waited for, up to MAX_QUIET_WAIT; a writer that never pauses that long gets a read that its stat or a
  second, identical read vouches for, and the content check alone decides; else the last complete
  snapshot is served.
- a content check (exporter.consistency): CLIENT_LIST and ROUTING_TABLE must describe the same clients.

Every outcome is remembered per file version (device, inode, size, mtime, ctime): an unchanged file costs
a stat, whether its last read succeeded or failed, so a hostile file is parsed once, not on every scrape.
"""

from __future__ import annotations

import os
import stat
import time
from typing import BinaryIO

from exporter.consistency import inconsistency
from exporter.parser import StatusParseError, parse_status
from exporter.sources.base import KeptSnapshot, Reading

# File timestamps tick with the kernel's coarse clock (a few ms); a window of several ticks is quiet for sure.
QUIET_SECONDS = 0.02
MAX_QUIET_WAIT = 0.5
# OpenVPN's longest line is a few hundred bytes. A status file whose every window of this many bytes
# does not hold a newline has a line of at least this length: refused before the parser splits it.
MAX_LINE_BYTES = 64 * 1024


class _ReadFailure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _version(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def has_long_line(data: bytes, bound: int = MAX_LINE_BYTES) -> bool:
    """True when some aligned window of `bound` bytes holds no newline: a line of `bound` bytes or more.
    One find per window, not per line: a few hundred calls for a 20 MB file."""
    return any(data.find(b"\n", start, start + bound) < 0 for start in range(0, len(data) - bound + 1, bound))


class FileSource(KeptSnapshot):
    kind = "file"

    def __init__(self, name: str, path: str, protocol: str, max_bytes: int) -> None:
        super().__init__(name, path, protocol)
        self.path = path
        # Without a 2.7 prefix, an "auto" source's sessions are UDP: OpenVPN's default `proto`.
        self._default_protocol = protocol if protocol in ("tcp", "udp") else "udp"
        self.max_bytes = max_bytes
        self._key: tuple[int, ...] | None = None  # the version of the file the snapshot came from
        self._failed: tuple[tuple[int, ...], _ReadFailure] | None = None  # a version that did not parse

    def close(self) -> None:
        """Nothing is held open between refreshes."""

    def refresh(self) -> Reading:
        """One refresh at a time: the hub never runs two of one source at once."""
        try:
            return self._refresh()
        except _ReadFailure as failure:
            self._errors.add(failure.reason)
            self._log_transition(failure.reason, failure.message)
            return self._reading(available=False, error=failure.message)

    def _refresh(self) -> Reading:
        before = self._stat()
        key = _version(before)
        if key == self._key:
            self._fallback_update = before.st_mtime
            self._log_transition("", "")
            return self._reading(available=True, error="")
        if self._failed is not None and self._failed[0] == key:
            return self._failing(self._failed[1], count=False)
        deadline = time.monotonic() + MAX_QUIET_WAIT
        busy = _ReadFailure("torn", "status file is still being rewritten")
        waits = 0
        while True:
            busy_for = QUIET_SECONDS - (time.time_ns() - max(before.st_mtime_ns, before.st_ctime_ns)) / 1e9
            if busy_for > 0:
                # A timestamp ahead of the clock (stepped back) says nothing about quiet: watch it instead.
                pause = min(busy_for, QUIET_SECONDS)
                if time.monotonic() + pause > deadline:
                    return self._unsettled_read(before, busy)
                # A file written once is waited for; one still changing after a wait has a writer that
                # keeps going, and scrapes take the last reading meanwhile.
                self.settling = waits > 0
                waits += 1
                try:
                    time.sleep(pause)
                finally:
                    self.settling = False
                now = self._stat()
                if busy_for <= QUIET_SECONDS or _version(now) != _version(before):
                    before = now
                    continue
            data = self._read()
            after = self._stat()
            if _version(after) != _version(before) or len(data) != after.st_size:
                before = after  # written to during the read: wait for the next quiet moment
                if time.monotonic() > deadline:
                    return self._failing(busy, count=True)
                continue
            return self._accept(_version(after), data, after, settled=True)

    def _unsettled_read(self, before: os.stat_result, busy: _ReadFailure) -> Reading:
        """A writer that never pauses: a read is trusted if the file's stat did not move during it, or if a
        second read right after it gives the same bytes, and then only if its tables agree (which alone
        rejects every mix that changes the session set, see tests/robustness/test_torn_replay.py).

        The second read is what lets the exporter follow such a writer on kernels with fine-grained
        timestamps (Linux 6.13+ on ext4, xfs, btrfs, tmpfs), where every write after a stat moves mtime:
        while the writer rewrites a prefix that did not change, the file holds one whole version and two
        reads agree; while it rewrites lines that changed, they almost never do."""
        data = self._read()
        after = self._stat()
        moved = _version(after) != _version(before) or len(data) != after.st_size
        if moved and self._read() != data:
            return self._failing(busy, count=True)
        return self._accept(_version(after), data, after, settled=False)

    def _accept(self, key: tuple[int, ...], data: bytes, st: os.stat_result, settled: bool) -> Reading:
        """A read of one version of the file: keep its snapshot, or say why it has none. Only a settled
        version (read after a quiet window) is remembered by its stat: the stat of a file still being
        written can stay the same within one tick of the file clock while its bytes change."""
        key_or_none = key if settled else None
        try:
            if has_long_line(data):
                raise StatusParseError(
                    "malformed", f"a line of {MAX_LINE_BYTES} bytes or more: not an OpenVPN status file"
                )
            snapshot = parse_status(data, self._default_protocol, self._snapshot)
            problem = inconsistency(snapshot, self._snapshot)
            if problem:
                raise StatusParseError("torn", problem)
        except StatusParseError as exc:
            failure = _ReadFailure(exc.reason, exc.message)
            self._failed = (key, failure) if key_or_none is not None else None
            return self._failing(failure, count=True)
        self._key, self._failed = key_or_none, None
        self._keep(snapshot)
        self._fallback_update = st.st_mtime
        self._log_transition("", "")
        return self._reading(available=True, error="")

    def _failing(self, failure: _ReadFailure, count: bool) -> Reading:
        """The file is there but gave no new snapshot: the last complete one keeps being served."""
        if count:
            self._errors.add(failure.reason)
        kept = " (serving the last complete read)" if self._snapshot is not None else ""
        message = f"{self.path}: {failure.message}{kept}"
        self._log_transition(failure.reason, message)
        return self._reading(available=True, error=message)

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
