"""The server state: what every view renders from, the readings of all sources at one moment."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from exporter.model import Session
from exporter.sources.base import Reading

UNKNOWN_VERSION = "unknown"


@dataclass(frozen=True, slots=True)
class ServerState:
    """What every view renders from. `key` is equal for two states that render identically."""

    server_name: str
    readings: tuple[Reading, ...]
    up_flags: tuple[bool, ...]
    taken_at: float
    key: tuple[object, ...]

    @property
    def up(self) -> bool:
        return any(self.up_flags)

    def live_readings(self) -> Iterator[Reading]:
        """Readings whose sessions count: read completely, reachable now, and fresh."""
        for reading, up in zip(self.readings, self.up_flags, strict=True):
            if up:
                yield reading

    def sessions(self) -> Iterator[tuple[Reading, Session]]:
        for reading in self.live_readings():
            assert reading.snapshot is not None
            for session in reading.snapshot.sessions:
                yield reading, session

    def version(self) -> str:
        """The OpenVPN version for probe_success: from a live source if one knows it."""
        for reading in (*self.live_readings(), *self.readings):
            if reading.snapshot is not None and reading.snapshot.version:
                return reading.snapshot.version
        return UNKNOWN_VERSION


def build_state(server_name: str, readings: tuple[Reading, ...], now: float, stale_after: float) -> ServerState:
    up_flags = tuple(r.is_up(now, stale_after) for r in readings)
    key = (server_name, tuple((r.name, r.generation, up) for r, up in zip(readings, up_flags, strict=True)))
    return ServerState(server_name, readings, up_flags, now, key)
