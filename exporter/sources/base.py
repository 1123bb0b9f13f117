"""What every source hands to the rest of the exporter: an immutable reading."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from exporter.model import Snapshot

log = logging.getLogger("openvpn_exporter")
# How much of an unexpected exception's text goes into a reading's error (and the log line).
MAX_CRASH_TEXT = 200
# OpenVPN writes TIME from the same clock on the same host; more than this ahead means a clock was stepped.
FUTURE_SLACK_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Reading:
    """The state of one source after a refresh.

    `snapshot` is the last complete parse, kept across torn or failed reads; `available` says whether
    the source itself (file or socket) could be reached on this refresh. `generation` changes exactly
    when `snapshot` does, so views can cache by it.
    """

    name: str
    kind: str  # "file" or "management"
    target: str
    protocol: str
    snapshot: Snapshot | None
    last_update: float | None  # epoch seconds: the TIME line, else the file's mtime
    available: bool
    error: str  # "" when the last refresh went well
    generation: int
    read_errors: tuple[tuple[str, int], ...]  # cumulative counts by reason

    def is_fresh(self, now: float, stale_after: float) -> bool:
        if self.last_update is None:
            return False
        return stale_after <= 0 or now - self.last_update <= stale_after

    def is_up(self, now: float, stale_after: float) -> bool:
        return self.available and self.snapshot is not None and self.is_fresh(now, stale_after)


class Source(Protocol):
    name: str
    kind: str
    target: str
    protocol: str
    settling: bool

    def refresh(self) -> Reading: ...

    def crashed(self, exc: BaseException) -> Reading: ...

    def close(self) -> None: ...


class ErrorCounter:
    """Cumulative read errors by reason, for `openvpn_exporter_read_errors_total`."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def add(self, reason: str) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + 1

    def items(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self._counts.items()))


class KeptSnapshot:
    """What every source keeps between refreshes: the last complete snapshot, its generation, the error
    counts, and the update time to use when the text has no TIME line (a file's mtime, a read's clock)."""

    kind = ""

    def __init__(self, name: str, target: str, protocol: str) -> None:
        self.name = name
        self.target = target
        self.protocol = protocol
        self._snapshot: Snapshot | None = None
        self._generation = 0
        self._errors = ErrorCounter()
        self._fallback_update: float | None = None
        self._logged_reason = ""
        # True while a refresh waits for the source to settle (a file being rewritten): scrapes then
        # serve the last reading at once instead of waiting with it.
        self.settling = False

    def crashed(self, exc: BaseException) -> Reading:
        """Whatever a refresh raised beyond the reasons a source knows: that source's error, counted and
        logged like any other, its last complete snapshot kept; never an error for the other sources."""
        text = str(exc)[:MAX_CRASH_TEXT].replace("\n", " ")
        message = f"{self.target}: unexpected error reading this source ({type(exc).__name__}: {text})"
        self._errors.add("internal")
        self._log_transition("internal", message)
        return self._reading(available=False, error=message)

    def _log_transition(self, reason: str, message: str) -> None:
        """One line per change of state, not one per scrape: a warning when a source starts failing (or
        fails another way), one info line when it reads again."""
        if reason == self._logged_reason:
            return
        if reason:
            log.warning("source %s: %s", self.name, message)
        else:
            log.info("source %s: %s reads again", self.name, self.target)
        self._logged_reason = reason

    def _keep(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._generation += 1

    def _reading(self, *, available: bool, error: str) -> Reading:
        snapshot = self._snapshot
        last_update: float | None = None
        if snapshot is not None:
            epoch = snapshot.updated_epoch
            # A TIME ahead of this clock (OpenVPN's clock, or this one, stepped) cannot age: the file's
            # mtime (a management reply's read time) can, so a writer that stopped goes stale in time.
            future = epoch is not None and epoch > time.time() + FUTURE_SLACK_SECONDS
            last_update = float(epoch) if epoch is not None and not future else self._fallback_update
        return Reading(
            name=self.name,
            kind=self.kind,
            target=self.target,
            protocol=self.protocol,
            snapshot=snapshot,
            last_update=last_update,
            available=available,
            error=error,
            generation=self._generation,
            read_errors=self._errors.items(),
        )
