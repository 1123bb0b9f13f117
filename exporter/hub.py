"""The hub: refreshes every configured source and hands the views one immutable ServerState.

Each source is refreshed on its own daemon thread, at most one refresh of a source at a time: concurrent
scrapes share the refresh in flight instead of queueing behind a lock, and a slow source (a management
interface answering just inside its timeout) never delays another's data. A scrape waits a short while
for the refreshes it started or joined, then serves the last completed reading of any still running. A
blocked refresh never keeps the process from stopping: nothing joins its thread.
"""

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
# How long a scrape waits for a source's refresh in flight before serving that source's previous reading;
# a source with no reading yet (the first refresh after start or reload) is waited for longer.
REFRESH_WAIT = 1.0
FIRST_READING_WAIT = 5.0


def make_source(config: Config, source: SourceConfig, target: str | None = None, name: str | None = None) -> Source:
    if source.kind == "management":
        from exporter.sources.management import ManagementSource

        return ManagementSource(source.name, source.target, source.protocol, source.password_file, source.timeout)
    return FileSource(name or source.name, target or source.target, source.protocol, config.max_file_bytes)


class SourceRunner:
    """One source's refreshes: at most one in flight, on a daemon thread, shared by every scrape that asks."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.reading: Reading | None = None  # the last completed refresh's
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._done.set()

    def start(self) -> threading.Event:
        """Start a refresh unless one is running; the event is set when the one in flight ends."""
        with self._lock:
            if self._done.is_set():
                self._done = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(self._done,), name=f"refresh {self.source.name}", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:  # no thread to be had (process limits): serve the last reading
                    self._done.set()
            return self._done

    def _run(self, done: threading.Event) -> None:
        try:
            self.reading = self.source.refresh()
        except Exception as exc:  # a source can fail only as a source
            self.reading = self.source.crashed(exc)
        finally:
            done.set()

    def current(self) -> Reading:
        """The last completed reading; a source still in its first refresh reads as unavailable."""
        reading = self.reading
        if reading is not None:
            return reading
        source = self.source
        return Reading(
            name=source.name,
            kind=source.kind,
            target=source.target,
            protocol=source.protocol,
            snapshot=None,
            last_update=None,
            available=False,
            error=f"{source.target}: first read still running",
            generation=0,
            read_errors=(),
        )


class Hub:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()  # guards the glob matches and the latest state, never a refresh
        self._fixed: dict[str, SourceRunner] = {}
        # Per glob source config: the runners of its current matches, by name.
        self._globbed: dict[str, dict[str, SourceRunner]] = {}
        for source in config.sources:
            if not _is_glob(source):
                self._fixed[source.name] = SourceRunner(make_source(config, source))
        self._latest: ServerState | None = None
        self._stale: frozenset[str] = frozenset()  # names of the sources last seen stale, to log transitions
        self._closed = threading.Event()

    def refresh(self, wait: float | None = None) -> ServerState:
        """Refresh every source; callers get the same state object back while nothing changed."""
        readings = self.readings(wait)
        state = build_state(self.config.server_name, readings, self._clock(), self.config.stale_after)
        with self._lock:
            stale, events = stale_transitions(self._stale, state.readings, state.taken_at, self.config.stale_after)
            self._stale = stale
            emit(events)
            if self._latest is not None and self._latest.key == state.key and self._latest.readings == state.readings:
                return self._latest
            self._latest = state
            return state

    def readings(self, wait: float | None = None) -> tuple[Reading, ...]:
        """The one place where per-source readings are produced, in config order: every source's refresh
        is started (or joined), then each is waited for until `wait` after the start (FIRST_READING_WAIT
        for a source without any reading yet)."""
        with self._lock:
            runners: list[SourceRunner] = []
            for source_config in self.config.sources:
                if _is_glob(source_config):
                    runners.extend(self._expand(source_config))
                else:
                    runners.append(self._fixed[source_config.name])
        wait = REFRESH_WAIT if wait is None else wait
        started = time.monotonic()
        pending = [(runner, runner.start()) for runner in runners]
        for runner, done in pending:
            limit = started + (wait if runner.reading is not None else max(wait, FIRST_READING_WAIT))
            # In slices, so that a closing hub (SIGTERM, reload) lets its waiting scrapes go at once, and
            # so does a source with a reading that waits for its file to settle.
            while not done.is_set() and not self._closed.is_set() and time.monotonic() < limit:
                if runner.reading is not None and runner.source.settling:
                    break
                done.wait(min(0.01, max(0.0, limit - time.monotonic())))
        return tuple(runner.current() for runner in runners)

    @property
    def latest(self) -> ServerState | None:
        return self._latest

    def close(self) -> None:
        """Never waits for a refresh in flight: its daemon thread ends with it, or with the process."""
        self._closed.set()
        for runner in (*self._fixed.values(), *(r for m in self._globbed.values() for r in m.values())):
            runner.source.close()

    def _expand(self, source_config: SourceConfig) -> list[SourceRunner]:
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
                matches[name] = SourceRunner(make_source(self.config, source_config, target=path, name=name))
            sources.append(matches[name])
        current = {s.source.name for s in sources}
        for gone in [n for n in matches if n not in current]:
            matches.pop(gone).source.close()
        return sources


def _fixed_prefix(pattern: str) -> str:
    """The directory part of a glob before its first wildcard, with its trailing slash ("" if none)."""
    cut = min((i for i, c in enumerate(pattern) if c in _GLOB_CHARS), default=len(pattern))
    return pattern[: pattern.rfind("/", 0, cut) + 1]


def _is_glob(source: SourceConfig) -> bool:
    return source.kind == "file" and any(c in _GLOB_CHARS for c in source.target)
