"""The web application: routes, response headers, per-state render caches and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from exporter import __version__
from exporter.churn import ChurnTracker
from exporter.config import Config
from exporter.headers import ResponseHeaders
from exporter.heap import release_free_heap
from exporter.hub import Hub
from exporter.reload import Reloader
from exporter.serving import LoopErrorLog, SharedBodyResponse, accepts_gzip
from exporter.sources.base import Reading
from exporter.state import ServerState
from exporter.views.churnmetrics import ChurnCollector
from exporter.views.metrics import MetricsView
from exporter.views.pages import STYLESHEET_PATH, render_landing, render_sessions_page
from exporter.views.selfmetrics import ExporterCollector
from exporter.views.sessions import render_sessions_json

log = logging.getLogger("openvpn_exporter")

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# Pages carry no script at all; the stylesheet is the exporter's own.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
RESERVED_PATHS = frozenset(
    {
        "/",
        "/prom",
        "/static",
        "/sessions",
        "/sessions_local",
        "/-/healthy",
        "/-/ready",
        "/-/reload",
        STYLESHEET_PATH,
    }
)
GZIP_MIN_BYTES = 1024


# A parse of this many sessions, or a render of this size, leaves tens of megabytes of freed heap (the
# old snapshot, the transient lists of the parse and render) that glibc keeps mapped unless asked to give
# it back: about 100 MB after each parse at 100,000 sessions. Giving it back costs page faults when the
# next parse takes the memory again: at 10,000 sessions a trim after every fresh scrape returned about
# 7 MB for 10-15% more CPU per fresh /sessions, so smaller files keep their freed heap for the next parse.
TRIM_MIN_SESSIONS = 25_000
TRIM_MIN_BYTES = 8 << 20


@dataclass
class _Entry:
    """A view's rendering of one state: the identity body, or once a gzip client has asked, the gzip body
    alone until an identity client asks again (Prometheus always asks for gzip: at 100,000 sessions that
    keeps 2 MB instead of 15 MB)."""

    key: object
    body: bytes | None
    size: int  # of the identity body
    gzipped: bytes | None = None

    def identity(self) -> bytes:
        """An identity client after a gzip one, on the same state: the body inflated again and kept from
        then on, so that every identity response shares one copy (a client that never reads pins no body
        of its own)."""
        if self.body is None:
            assert self.gzipped is not None
            self.body = gzip.decompress(self.gzipped)
        return self.body


@dataclass
class ViewCache:
    """One rendering per distinct state: scrapes of an unchanged source cost a stat and a send."""

    render: Callable[[ServerState], bytes]
    _entry: _Entry | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, state: ServerState, want_gzip: bool, trim: bool = False) -> tuple[bytes, bool]:
        """The body for `state` (gzipped if wanted and worth it), and whether it is gzipped. `trim` asks
        for freed heap to be given back once the body is ready, as a large render also does: one trim
        after a large parse and its render, not one each."""
        with self._lock:
            entry = self._entry
            if entry is None or entry.key != state.key:
                entry = self._entry = None  # the old rendering is garbage before the new one is built
                body = self.render(state)
                entry = self._entry = _Entry(state.key, body, len(body))
                del body
                trim = trim or entry.size >= TRIM_MIN_BYTES
            if trim:
                release_free_heap()
            if not want_gzip or entry.size < GZIP_MIN_BYTES:
                return entry.identity(), False
            if entry.gzipped is None:
                assert entry.body is not None  # dropped only once gzipped
                # Level 1: most of the size win for a fraction of level 6's CPU on 10 MB of text.
                entry.gzipped = gzip.compress(entry.body, compresslevel=1, mtime=0)
                entry.body = None
            return entry.gzipped, True

    def forget_stale(self, key: object) -> None:
        """Drop a rendering of an older state: at 100,000 sessions a stale page is tens of megabytes.

        Non-blocking: a cache busy rendering is about to replace its entry anyway.
        """
        if self._lock.acquire(blocking=False):
            try:
                if self._entry is not None and self._entry.key != key:
                    self._entry = None
            finally:
                self._lock.release()


class ExporterApp:
    def __init__(self, config: Config, telemetry_path: str = "/metrics") -> None:
        self.telemetry_path = telemetry_path
        self.ready = False
        self.serving_error = ""  # why the last render failed, for /-/ready; "" while renders succeed
        self.stopped = False  # a stop signal arrived
        self._trimmed_after: object = None  # the key of the last state whose parse was followed by a trim
        self._config_lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.scrape_seconds = Histogram(
            "openvpn_exporter_scrape_duration_seconds",
            "Time to answer a request for OpenVPN data, by path",
            ["path"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.requests = Counter(
            "openvpn_exporter_http_requests", "HTTP requests answered, by path and status code",
            ["path", "code"], registry=self.registry,
        )  # fmt: skip
        self.apply_config(config)
        self.reloader = Reloader(config.path, self.apply_config)
        self.registry.register(ExporterCollector(lambda: self.hub.latest, __version__))
        # Churn counts outlive a reload: sources keep their names, so nothing restarts from a baseline.
        self.churn = ChurnTracker()
        self.registry.register(ChurnCollector(self.churn, self._latest_readings, lambda: self.config.metrics))

    def apply_config(self, config: Config) -> None:
        """Swap in a new configuration: new sources, fresh caches. Requests in flight finish on the old."""
        hub = Hub(config)
        metrics_view = MetricsView(config.metrics)
        caches = {
            "metrics": ViewCache(lambda s: metrics_view.render(s).encode()),
            "sessions": ViewCache(render_sessions_json),
            "static": ViewCache(lambda s: render_sessions_page(s).encode()),
        }
        with self._config_lock:
            old = getattr(self, "hub", None)
            self.config, self.hub, self._caches = config, hub, caches
        if old is not None:
            old.close()

    def _latest_readings(self) -> tuple[tuple[Reading, ...], float] | None:
        state = self.hub.latest
        return None if state is None else (state.readings, state.taken_at)

    def reload_config(self) -> tuple[bool, str]:
        """Re-read the config files the running config came from. A bad file keeps the old config serving."""
        return self.reloader.reload("POST /-/reload")

    def _rendered(self, view: str, want_gzip: bool) -> tuple[bytes, bool]:
        """A view's body; a failure here is the exporter's own (a source's is in its reading), and
        readiness reports it until a render succeeds again."""
        try:
            rendered = self._render(view, want_gzip)
        except Exception as exc:
            if not self.serving_error:
                log.error("cannot render %s: %s: %s", view, type(exc).__name__, str(exc)[:200])
            self.serving_error = f"cannot render {view}: {type(exc).__name__}"
            raise
        self.serving_error = ""
        return rendered

    def _render(self, view: str, want_gzip: bool) -> tuple[bytes, bool]:
        hub, caches = self.hub, self._caches
        state = hub.refresh()
        large_parse = False
        if state.key != self._trimmed_after:
            self._trimmed_after = state.key
            large_parse = sum(len(r.snapshot.session_table) for r in state.readings if r.snapshot) >= TRIM_MIN_SESSIONS
        for name, other in caches.items():
            if name != view:
                other.forget_stale(state.key)
        return caches[view].get(state, want_gzip, trim=large_parse)

    async def _view(self, request: Request, view: str, media_type: str, headers: dict[str, str]) -> Response:
        started = time.perf_counter()
        want_gzip = accepts_gzip(request.headers.get("accept-encoding", ""))
        body, gzipped = await run_in_threadpool(self._rendered, view, want_gzip)
        if gzipped:
            headers = {**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        self.scrape_seconds.labels(request.url.path).observe(time.perf_counter() - started)
        self.requests.labels(request.url.path, "200").inc()
        return SharedBodyResponse(body, media_type=media_type, headers=headers)

    async def metrics(self, request: Request) -> Response:
        return await self._view(request, "metrics", PROMETHEUS_TEXT, {})

    def _prom_body(self) -> bytes:
        """In the thread pool: collecting diffs the sources' new snapshots (churn), which grows with them."""
        openvpn, _ = self._rendered("metrics", False)
        return generate_latest(self.registry) + openvpn

    async def prom(self, request: Request) -> Response:
        started = time.perf_counter()
        body = await run_in_threadpool(self._prom_body)
        self.scrape_seconds.labels("/prom").observe(time.perf_counter() - started)
        self.requests.labels("/prom", "200").inc()
        return SharedBodyResponse(body, media_type=PROMETHEUS_TEXT)

    async def sessions(self, request: Request) -> Response:
        return await self._view(request, "sessions", "application/json", {"Cache-Control": "no-store"})

    async def static(self, request: Request) -> Response:
        headers = {
            "Cache-Control": "no-store",
            "Content-Security-Policy": PAGE_CSP,
            "Referrer-Policy": "no-referrer",
        }
        return await self._view(request, "static", "text/html; charset=utf-8", headers)

    async def landing(self, request: Request) -> Response:
        body = render_landing(__version__, self.telemetry_path)
        return Response(
            body,
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer"},
        )

    async def stylesheet(self, request: Request) -> Response:
        return Response(_stylesheet(), media_type="text/css; charset=utf-8", headers={"Cache-Control": "max-age=3600"})

    async def healthy(self, request: Request) -> Response:
        return PlainTextResponse("OK")

    async def reload(self, request: Request) -> Response:
        """`POST /-/reload`, as Prometheus has it; off unless the running config enables it."""
        if not self.config.enable_reload_endpoint:
            return PlainTextResponse(
                "the reload endpoint is disabled (set enable_reload_endpoint: true in the config)", status_code=403
            )
        ok, message = await run_in_threadpool(self.reload_config)
        return PlainTextResponse(message, status_code=200 if ok else 400)

    async def readiness(self, request: Request) -> Response:
        if not self.ready:
            return PlainTextResponse("stopping" if self.stopped else "starting", status_code=503)
        if self.serving_error:
            return PlainTextResponse(self.serving_error, status_code=503)
        return PlainTextResponse("OK")

    def stopping(self) -> None:
        """A stop signal: not ready any more, and scrapes waiting for a refresh answer at once."""
        self.ready = False
        self.stopped = True
        self.hub.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Out of file descriptors, asyncio retries accept() each second: one line per interval, no traceback.
        asyncio.get_running_loop().set_exception_handler(LoopErrorLog())
        # A first refresh at start logs unreadable sources at once and warms the caches.
        await run_in_threadpool(self.hub.refresh)
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            self.hub.close()

    def routes(self) -> list[Route]:
        return [
            Route("/", self.landing),
            Route(self.telemetry_path, self.metrics),
            Route("/prom", self.prom),
            Route("/static", self.static),
            Route("/sessions", self.sessions),
            Route("/sessions_local", self.sessions),
            Route(STYLESHEET_PATH, self.stylesheet),
            Route("/-/healthy", self.healthy),
            Route("/-/ready", self.readiness),
            Route("/-/reload", self.reload, methods=["POST", "PUT"]),
        ]

    def asgi(self, middleware: Sequence[Middleware] = ()) -> Starlette:
        app = Starlette(
            routes=self.routes(),
            middleware=[Middleware(ResponseHeaders, headers=[("X-Content-Type-Options", "nosniff")]), *middleware],
            lifespan=self.lifespan,
        )
        # The contract: unknown paths are 404, "/metrics/" included, not a redirect.
        app.router.redirect_slashes = False
        return app


@cache
def _stylesheet() -> bytes:
    """Read on the first request for it: a sidecar nobody opens in a browser never holds it, nor loads
    importlib.resources. The package is installed as files (pip, the image), never zipped."""
    return (Path(__file__).parent / "assets" / "style.css").read_bytes()


def create_app(config: Config, telemetry_path: str = "/metrics") -> Starlette:
    return ExporterApp(config, telemetry_path).asgi()
