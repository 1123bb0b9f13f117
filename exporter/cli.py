"""The `openvpn-exporter` command: flags in the Prometheus style, config, listening socket, server."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from exporter import __version__
from exporter.config import Config, ConfigError, load_config
from exporter.prepare import DEFAULT_MODE, PrepareError, parse_group, parse_mode, prepare_file

if TYPE_CHECKING:
    import uvicorn
    from starlette.middleware import Middleware

    from exporter.app import ExporterApp

    # Imported where used, only with --web.config.file: TLS and basic auth (bcrypt, hmac, secrets)
    # cost memory that a plain sidecar never needs.
    from exporter.webconfig import WebConfig

PROG = "openvpn-exporter"
log = logging.getLogger("openvpn_exporter")


class UsageError(Exception):
    """A bad flag value: one line, exit 2."""


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Prometheus exporter for OpenVPN: reads OpenVPN status files (or the management "
        "interface) and serves /metrics, /prom, /sessions and two pages.",
        epilog=f"'{PROG} prepare --help' describes the init-container command.",
    )
    parser.add_argument(
        "--web.listen-address", dest="listen_address", default=":9234", metavar="ADDR",
        help="address to listen on: ':9234' (all interfaces), '127.0.0.1:9234', '[::1]:9234' (default :9234)",
    )  # fmt: skip
    parser.add_argument(
        "--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
        help="path of the OpenVPN metrics (default /metrics)",
    )  # fmt: skip
    parser.add_argument(
        "--config.file", dest="config_file", default="exporter.yaml", metavar="FILE",
        help="exporter configuration (default exporter.yaml)",
    )  # fmt: skip
    parser.add_argument(
        "--web.config.file", dest="web_config_file", default="", metavar="FILE",
        help="TLS and basic-auth configuration, in the Prometheus exporter-toolkit format",
    )  # fmt: skip
    parser.add_argument(
        "--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"],
        help="log level (default info)",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def build_prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} prepare",
        description="Pre-create OpenVPN status files readable by a non-root exporter (for an init "
        "container). With no PATH, prepares every status file named in the config.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="status files to create")
    parser.add_argument("--mode", default=f"{DEFAULT_MODE:04o}", help="file mode, octal (default 0644)")
    parser.add_argument("--group", default="", help="numeric group to give the files to (the pod's fsGroup)")
    parser.add_argument("--config.file", dest="config_file", default="", metavar="FILE")
    return parser


def parse_listen_address(text: str) -> tuple[str, int]:
    """Go's forms: ':9234', 'host:9234', '[v6]:9234'. An empty host means every interface."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise UsageError(f"--web.listen-address: {text!r} has no port; use the form ':9234' or 'host:9234'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--web.listen-address: {text!r}: put an IPv6 address in brackets, as '[::1]:9234'")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--web.listen-address: {text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def open_listener(host: str, port: int) -> socket.socket:
    """Bind before serving, so that a taken port is one clear line instead of a server's traceback."""
    where = f"{host or '*'}:{port}" if ":" not in host else f"[{host}]:{port}"
    candidates: list[tuple[socket.AddressFamily, str]]
    if host in ("", "::"):
        candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")] if host == "" else [(socket.AF_INET6, "::")]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise UsageError(f"--web.listen-address: cannot resolve host {host!r}: {exc.strerror}") from None
        candidates = [(info[0], str(info[4][0])) for info in infos]
    last: OSError | None = None
    for family, address in candidates:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for a TCP-protocol
        # listener, and without it every response on a kept-alive connection waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # ':9234' means IPv4 too
            sock.bind((address, port))
            sock.listen(2048)
            sock.set_inheritable(True)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno == errno.EAFNOSUPPORT or (exc.errno == errno.EADDRNOTAVAIL and host == ""):
                continue
            break
    assert last is not None
    reasons = {
        errno.EADDRINUSE: "address already in use (another process holds this port: stop it or choose "
        "another with --web.listen-address)",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
        errno.EADDRNOTAVAIL: "this host has no such address",
    }
    raise OSError(last.errno, f"cannot listen on {where}: {reasons.get(last.errno or 0, last.strerror)}")


def run_prepare(argv: Sequence[str]) -> int:
    args = build_prepare_parser().parse_args(argv)
    try:
        mode = parse_mode(args.mode)
        group = parse_group(args.group) if args.group else None
        paths = list(args.paths)
        if not paths:
            if not args.config_file:
                raise PrepareError("name the status files to create, or pass --config.file")
            config = load_config(args.config_file)
            paths = [s.target for s in config.sources if s.kind == "file" and not any(c in s.target for c in "*?[")]
        for path in paths:
            print(prepare_file(path, mode, group))
    except (PrepareError, ConfigError) as exc:
        return _fail(str(exc), 1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "prepare":
        return run_prepare(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper().replace("WARN", "WARNING"),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config_file)
        if not args.telemetry_path.startswith("/") or args.telemetry_path in _reserved_paths():
            raise UsageError(
                f"--web.telemetry-path: {args.telemetry_path!r} must start with '/' and not be one of "
                f"the exporter's other paths"
            )
        host, port = parse_listen_address(args.listen_address)
        web = _load_web_config(args.web_config_file)
    except (ConfigError, UsageError) as exc:
        return _fail(str(exc), 2)
    try:
        sock = open_listener(host, port)
    except UsageError as exc:
        return _fail(str(exc), 2)
    except OSError as exc:
        return _fail(str(exc.strerror), 1)
    return _serve(config, args.telemetry_path, sock, args.config_file, web)


def _reserved_paths() -> frozenset[str]:
    from exporter.app import RESERVED_PATHS

    return RESERVED_PATHS


def _load_web_config(path: str) -> WebConfig | None:
    if not path:
        return None
    from exporter.webconfig import WebConfigError, load_web_config

    try:
        return load_web_config(path)
    except WebConfigError as exc:
        raise UsageError(str(exc)) from None


def _web_layers(exporter: ExporterApp, web: WebConfig | None) -> tuple[list[Middleware], dict[str, Any]]:
    """The web config's middleware and server options; its users and TLS files reload with the config."""
    if web is None:
        return [], {}
    from exporter.webconfig import WebRuntime

    runtime = WebRuntime(web)
    exporter.reloader.web = runtime
    return runtime.middleware(), runtime.options()


def _start_reloading(exporter: ExporterApp) -> None:
    """SIGHUP reloads in a thread (never on the event loop); a watcher reloads when a file changes."""
    signal.signal(signal.SIGHUP, lambda *_: exporter.reloader.request("SIGHUP"))
    exporter.reloader.watch(lambda: exporter.config.config_check_interval)


def _uvicorn_config(app: Any, ssl_options: dict[str, Any], with_web_config: bool) -> uvicorn.Config:
    import uvicorn

    from exporter.serving import KEEP_ALIVE_SECONDS, MAX_CONNECTIONS, BoundedH11Protocol

    config_class: type[uvicorn.Config] = uvicorn.Config
    if with_web_config:
        from exporter.webconfig import ServerConfig

        # uvicorn's Config, with a TLS context that picks up renewed certificate files by itself.
        config_class = ServerConfig
    return config_class(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
        server_header=False,
        # Bounded cost per connection: a deadline for each request head and each stalled write, and a
        # cap on connections, beyond which a request gets a 503 (exporter.serving).
        http=BoundedH11Protocol,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        **ssl_options,
    )


def _serve(config: Config, telemetry_path: str, sock: socket.socket, config_path: str, web: WebConfig | None) -> int:
    from exporter.app import ExporterApp
    from exporter.heap import tune_heap
    from exporter.serving import PromptServer, bound_tls_handshakes

    tune_heap()
    bound_tls_handshakes()
    exporter = ExporterApp(config, telemetry_path)
    middleware, ssl_options = _web_layers(exporter, web)
    uv_config = _uvicorn_config(exporter.asgi(middleware), ssl_options, web is not None)
    server = PromptServer(uv_config, on_exit=exporter.stopping)
    scheme = "https" if ssl_options else "http"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    log.info("openvpn-exporter %s listening on %s://%s:%d (config %s)", __version__, scheme, shown, port, config_path)
    for source in config.sources:
        log.info("source %s: %s %s (protocol %s)", source.name, source.kind, source.target, source.protocol)

    _start_reloading(exporter)
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting 0 then is the clean stop Kubernetes expects.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    exporter.reloader.stop()
    log.info("stopped")
    return 0
