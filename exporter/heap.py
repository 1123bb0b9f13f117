"""The process heap: giving freed memory back to the OS.

A parse of a 100,000-session file allocates and frees about a hundred megabytes. glibc keeps freed heap
mapped, and its mmap threshold rises after every large free, so that the next 30 MB buffer comes from the
heap too and its pages stay behind as well. Both are glibc behaviours; elsewhere (musl, macOS) these
functions do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable

_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers, from glibc's malloc.h
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 4 << 20


def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):  # not glibc: nothing to tune, nothing lost
        return None
    return function


_MALLOC_TRIM = _libc_function("malloc_trim")
_MALLOPT = _libc_function("mallopt")


def release_free_heap() -> None:
    """Return freed heap pages to the OS: without it RSS stays at the high-water mark of the largest parse."""
    if _MALLOC_TRIM is not None:
        with contextlib.suppress(Exception):
            _MALLOC_TRIM(0)


def tune_heap() -> None:
    """Two glibc settings, process-wide, made once at start by the command line, before any thread runs.

    One malloc arena: glibc gives threads arenas of their own, and each keeps the free memory of its
    high-water mark. A parse runs on a refresh thread and the renders on the server's worker threads, so
    at 10,000 sessions two arenas each held about 10 MB, mostly free; with one arena the render reuses
    what the parse freed (about 4 MB less RSS after fresh scrapes). Python allocates under the GIL, so
    the arena's lock is not contended.

    Every allocation of 4 MiB or more (the reads, decoded text and rendered pages of files over about
    15,000 sessions) gets its own mapping, returned to the OS the moment it is freed. Setting the
    threshold also stops glibc from raising it after large frees. Smaller buffers keep coming from the
    heap, whose pages are reused without new page faults."""
    if _MALLOPT is not None:
        with contextlib.suppress(Exception):
            _MALLOPT(_M_ARENA_MAX, 1)
            _MALLOPT(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
