"""Bounded cost per connection: what uvicorn does not bound by itself.

- A body is sent from the shared cached bytes in chunks of a memoryview, each send waiting until the
  transport has room (uvicorn's flow control), so a reader that never reads pins at most one chunk and a
  socket buffer, not a copy of a 30 MB body.
- A connection that has not sent a whole request head within HEADER_TIMEOUT is closed (uvicorn's
  keep-alive timeout covers only the idle time after a response), and one whose writes stay paused for
  WRITE_TIMEOUT (a reader that stopped reading) is aborted.
- Event-loop errors (a failed accept() when the process is out of file descriptors) are logged as one
  line, at most once per ERROR_LOG_INTERVAL for each kind, never a traceback each.

The number of connections is capped by uvicorn's `limit_concurrency` (a 503 beyond it), set in the CLI.
"""

from __future__ import annotations

import asyncio
import asyncio.constants
import logging
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import h11
import uvicorn
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("openvpn_exporter")

CHUNK_BYTES = 64 * 1024
HEADER_TIMEOUT = 10.0
WRITE_TIMEOUT = 20.0
# Connections served at once; beyond it a request gets a 503. Each costs at most a chunk and the
# transport's buffer (~128 KiB): 512 stay far under the container's memory limit and fd limit (1024).
MAX_CONNECTIONS = 512
KEEP_ALIVE_SECONDS = 5
ERROR_LOG_INTERVAL = 10.0


def bound_tls_handshakes() -> None:
    """A TLS client gets HEADER_TIMEOUT to finish its handshake, as a plain one gets for its request head,
    instead of asyncio's 60 s (the request-head deadline starts only once the handshake is done). asyncio
    reads this constant for each new TLS connection; process-wide, so the command line sets it once."""
    asyncio.constants.SSL_HANDSHAKE_TIMEOUT = HEADER_TIMEOUT


class SharedBodyResponse(Response):
    """A Response whose body (the view cache's bytes, shared by every request) is sent in memoryview
    chunks with backpressure instead of in one write that the transport would copy if it cannot send it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        view = memoryview(self.body)
        if len(view) <= CHUNK_BYTES:
            await send({"type": "http.response.body", "body": self.body})
            return
        for start in range(0, len(view), CHUNK_BYTES):
            end = start + CHUNK_BYTES
            await send({"type": "http.response.body", "body": view[start:end], "more_body": end < len(view)})


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head and for each paused write."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        # A request head is in once h11 has moved past IDLE for this cycle.
        if self._head_timer is not None and self.conn.their_state is not h11.IDLE:
            self._head_timer.cancel()
            self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's head has its own deadline, whatever bytes trickle in meanwhile.
        if self._head_timer is None and not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(WRITE_TIMEOUT, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value allows gzip, with q-values: `gzip;q=0` refuses it, `*` allows it
    unless gzip itself is refused. Bounded: a header is at most a few KB (h11's limit), parsed once."""
    gzip_q: float | None = None
    star_q: float | None = None
    for item in header.split(","):
        name, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # nan, negative, over one: not a q-value
                    q = 0.0
        name = name.strip().lower()
        if name in ("gzip", "x-gzip"):
            gzip_q = q
        elif name == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


class LoopErrorLog:
    """An event-loop exception handler: one line per kind of error, at most once per interval, with how
    many were not logged; no traceback. Out of file descriptors, asyncio retries accept() each second."""

    def __init__(self, interval: float = ERROR_LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "event loop error"))[:200]
        now = time.monotonic()
        if now - self._last.get(message, -self.interval) < self.interval:
            self._skipped[message] = self._skipped.get(message, 0) + 1
            return
        self._last[message] = now
        skipped = self._skipped.pop(message, 0)
        exc = context.get("exception")
        detail = f": {type(exc).__name__}: {str(exc)[:200]}" if exc is not None else ""
        more = f" ({skipped} more since the last such line)" if skipped else ""
        log.error("%s%s%s", message, detail, more)


class PromptServer(uvicorn.Server):
    """uvicorn's server, telling the app the moment a stop signal arrives: scrapes waiting for a refresh
    then answer at once with what they have, so the graceful shutdown is not spent waiting for them."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)
