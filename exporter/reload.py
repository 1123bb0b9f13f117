"""Reloading the configuration of a running exporter: on SIGHUP, on `POST /-/reload`, and when a
config file changes on disk.

A reload reads exporter.yaml and the web config again, off the event loop, and applies both or
neither: whatever goes wrong while reading (any exception) is one line logged as `reload rejected,
keeping the running configuration: ...`, and the running configuration keeps serving.

The files are watched by polling, which covers both ways they change: kubelet updates a mounted
ConfigMap by writing a new timestamped directory and renaming a new `..data` symlink over the old one
(`exporter.yaml -> ..data/exporter.yaml`), so the resolved path and inode change; an edit in place
changes the size or the modification time. A bad new version is logged once, when it appears.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from exporter.config import Config, ConfigError, load_config
from exporter.yamlfile import MAX_MESSAGE, clip

if TYPE_CHECKING:
    # Only a server with --web.config.file has one: TLS and bcrypt stay unloaded without it.
    from exporter.webconfig import WebRuntime

log = logging.getLogger("openvpn_exporter")

# While config_check_interval is 0 (off), how often to look whether a reload turned it on.
IDLE_CHECK = 5.0
FileStamp = tuple[object, ...]


def file_stamp(path: str) -> FileStamp:
    """What changes when the file at `path` is replaced or edited: where its symlinks lead, and its
    inode, size and times; or why it cannot be reached."""
    try:
        st = os.stat(path)
        return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except OSError as exc:
        return (path, exc.errno)
    except ValueError:  # a NUL byte in the path
        return (path,)


class Reloader:
    """Reloads of one exporter: one at a time, each applied whole or not at all."""

    def __init__(self, config_path: str, apply: Callable[[Config], None]) -> None:
        self.config_path = config_path
        self.apply = apply
        self.web: WebRuntime | None = None  # set when the server runs with a web config
        self._lock = threading.Lock()
        self._requested = False
        self._stop = threading.Event()

    def paths(self) -> list[str]:
        return [self.config_path] + ([self.web.web.path] if self.web is not None else [])

    def reload(self, why: str) -> tuple[bool, str]:
        """Read and apply both files; (whether it was applied, the line to show)."""
        with self._lock:
            return self._reload(why)

    def _reload(self, why: str) -> tuple[bool, str]:
        try:
            config = load_config(self.config_path)
            apply_web = self.web.prepare() if self.web is not None else None
            self.apply(config)
            if apply_web is not None:
                apply_web()
        except ConfigError as exc:
            message = clip(str(exc), MAX_MESSAGE)
        except Exception as exc:  # whatever it is, the running configuration keeps serving
            message = clip(f"{self.config_path}: cannot be loaded: {type(exc).__name__}: {exc}", MAX_MESSAGE)
        else:
            names = " and ".join(self.paths())
            log.info("configuration reloaded from %s (%s)", names, why)
            return True, f"configuration reloaded from {names}"
        log.error("reload rejected, keeping the running configuration: %s", message)
        return False, message

    def request(self, why: str = "SIGHUP") -> None:
        """Reload in a thread of its own; safe to call from a signal handler. Requests made while one is
        waiting to run are the same request: a burst of signals costs at most two reloads at a time."""
        if self._requested:
            return
        self._requested = True
        threading.Thread(target=self._requested_reload, args=(why,), name="reload", daemon=True).start()

    def _requested_reload(self, why: str) -> None:
        with self._lock:
            # Cleared once this reload may start, so that signals that come while another one runs start
            # one thread between them, which reads the files after they stopped.
            self._requested = False
            self._reload(why)

    def watch(self, interval: Callable[[], float]) -> threading.Thread:
        """Poll the config files every `interval()` seconds (0: not now) and reload when one changed."""
        thread = threading.Thread(target=self._watch, args=(interval,), name="config-watch", daemon=True)
        thread.start()
        return thread

    def _watch(self, interval: Callable[[], float]) -> None:
        last = [file_stamp(p) for p in self.paths()]
        while not self._stop.wait(interval() or IDLE_CHECK):
            if not interval():
                continue
            now = [file_stamp(p) for p in self.paths()]
            if now != last:
                last = now
                self.reload("a config file changed on disk")

    def stop(self) -> None:
        self._stop.set()
