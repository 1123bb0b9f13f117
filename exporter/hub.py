"""The hub: refreshes every configured source and hands the views one immutable ServerState."""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable

from exporter.config import Config, SourceConfig
from exporter.freshness import emit, stale_transitions
from exporter.sources.base import Reading, Source
from exporter.sources.file import FileSource
from exporter.state import ServerState, build_state

_GLOB_CHARS = frozenset("*?[")


def make_source(config: Config, source: SourceConfig, target: str | None = None, name: str | None = None) -> Source:
    if source.kind == "management":
        from exporter.sources.management import ManagementSource

        return ManagementSource(source.name, source.target, source.protocol, source.password_file, source.timeout)
    return FileSource(name or source.name, target or source.target, source.protocol, config.max_file_bytes)


class Hub:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._fixed: dict[str, Source] = {}
        # Per glob source config: the sources of its current matches, by name.
        self._globbed: dict[str, dict[str, Source]] = {}
        for source in config.sources:
            if not _is_glob(source):
                self._fixed[source.name] = make_source(config, source)
        self._latest: ServerState | None = None
        self._stale: frozenset[str] = frozenset()  # names of the sources last seen stale, to log transitions

    def refresh(self) -> ServerState:
        """Refresh every source; callers get the same state object back while nothing changed."""
        with self._lock:
            readings: list[Reading] = []
            for source_config in self.config.sources:
                if _is_glob(source_config):
                    readings.extend(s.refresh() for s in self._expand(source_config))
                else:
                    readings.append(self._fixed[source_config.name].refresh())
            state = build_state(self.config.server_name, tuple(readings), self._clock(), self.config.stale_after)
            stale, events = stale_transitions(self._stale, state.readings, state.taken_at, self.config.stale_after)
            self._stale = stale
            emit(events)
            if self._latest is not None and self._latest.key == state.key and self._latest.readings == state.readings:
                return self._latest
            self._latest = state
            return state

    @property
    def latest(self) -> ServerState | None:
        return self._latest

    def close(self) -> None:
        for source in (*self._fixed.values(), *(s for m in self._globbed.values() for s in m.values())):
            source.close()

    def _expand(self, source_config: SourceConfig) -> list[Source]:
        """Each regular file a glob matches is a source of its own, named `<name>:<path below the glob's
        fixed directory>`: `<name>:tcp.status` for `/run/openvpn/*.status`, `<name>:a/server.status` for
        `/run/*/server.status`, so that two matches never share a name."""
        sources = []
        matches = self._globbed.setdefault(source_config.name, {})
        fixed = _fixed_prefix(source_config.target)
        for path in sorted(glob.glob(source_config.target)):
            # A socket, FIFO or directory in the status directory (management.sock) is no status file.
            if not os.path.isfile(path):
                continue
            name = f"{source_config.name}:{path[len(fixed) :] if path.startswith(fixed) else path}"
            if name not in matches:
                matches[name] = make_source(self.config, source_config, target=path, name=name)
            sources.append(matches[name])
        current = {s.name for s in sources}
        for gone in [n for n in matches if n not in current]:
            matches.pop(gone).close()
        return sources


def _fixed_prefix(pattern: str) -> str:
    """The directory part of a glob before its first wildcard, with its trailing slash ("" if none)."""
    cut = min((i for i, c in enumerate(pattern) if c in _GLOB_CHARS), default=len(pattern))
    return pattern[: pattern.rfind("/", 0, cut) + 1]


def _is_glob(source: SourceConfig) -> bool:
    return source.kind == "file" and any(c in _GLOB_CHARS for c in source.target)
