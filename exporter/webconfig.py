"""`--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit format.

    tls_server_config:
      cert_file: /etc/openvpn-exporter/tls/tls.crt
      key_file: /etc/openvpn-exporter/tls/tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: /etc/openvpn-exporter/tls/ca.crt
      min_version: TLS12                            # TLS10 | TLS11 | TLS12 (default) | TLS13
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2b$12$...                        # bcrypt hash

Certificate files are watched: a handshake after cert_file, key_file or client_ca_file changed on disk
(cert-manager renewing a Secret, say) is served from a freshly loaded context, without a restart.
Basic auth covers every path but the health endpoints, which Kubernetes probes call without credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import uvicorn
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from exporter.headers import ResponseHeaders
from exporter.yamlfile import parse_yaml, read_config_text

log = logging.getLogger("openvpn_exporter")

REALM = "openvpn-exporter"
UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})
# Go's exporter-toolkit names, and what Python's ssl module can do with each.
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    # Go would ask for a certificate and never check it; nothing uses it, so not asking is equivalent.
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's names of the TLS 1.2 suites exporter-toolkit users set, in OpenSSL's spelling (TLS 1.3 suites
# are not configurable in Go either).
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
_BCRYPT_HASH = re.compile(r"^\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Successful checks remembered so that a scrape every few seconds does not cost a bcrypt each time.
AUTH_CACHE_SIZE = 1024


class WebConfigError(Exception):
    """One line naming the web config file and the key: printed as is, exit 2."""


@dataclass(frozen=True, slots=True)
class TLSSettings:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str = ""
    min_version: str = "TLS12"
    max_version: str = ""
    ciphers: str = ""

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


@dataclass(frozen=True, slots=True)
class WebConfig:
    path: str
    tls: TLSSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # username -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------------------------- loading


def load_web_config(path: str) -> WebConfig:
    return parse_web_config(read_config_text(path, "web config file", "--web.config.file", WebConfigError), path)


def parse_web_config(text: str, path: str = "web-config.yml") -> WebConfig:
    raw = parse_yaml(text, path, WebConfigError)
    if raw is None:
        raw = {}  # an empty file is valid for the toolkit: plain HTTP, no auth
    section = _mapping(raw, path, "")
    _known(section, {"tls_server_config", "http_server_config", "basic_auth_users"}, path, "")
    web = WebConfig(
        path=path,
        tls=_parse_tls(section.get("tls_server_config"), path),
        users=_parse_users(section.get("basic_auth_users"), path),
        headers=_parse_http(section.get("http_server_config"), path),
    )
    if web.tls is not None:
        # Fail at start, with the key named, rather than at the first handshake.
        build_ssl_context(web.tls, path)
    return web


def _mapping(value: object, path: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        where = f"{path}: {key}" if key else path
        raise WebConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _known(section: dict[str, Any], known: set[str], path: str, prefix: str) -> None:
    for key in section:
        if key not in known:
            raise WebConfigError(f"{path}: {prefix}{key}: unknown key (known: {', '.join(sorted(known))})")


def _string(section: dict[str, Any], key: str, path: str, prefix: str) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WebConfigError(f"{path}: {prefix}{key}: expected a string, got {type(value).__name__}")
    return value


def _parse_tls(raw: object, path: str) -> TLSSettings | None:
    if raw is None:
        return None
    prefix = "tls_server_config."
    section = _mapping(raw, path, "tls_server_config")
    unsupported = {"cert", "key", "client_ca", "client_allowed_sans", "curve_preferences"}
    supported = {
        "cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
        "cipher_suites", "prefer_server_cipher_suites",
    }  # fmt: skip
    for key in section:
        if key in unsupported:
            raise WebConfigError(f"{path}: {prefix}{key}: not supported by openvpn-exporter")
    _known(section, supported, path, prefix)
    values = {
        key: _string(section, key, path, prefix) for key in supported - {"cipher_suites", "prefer_server_cipher_suites"}
    }
    for key in ("cert_file", "key_file"):
        if not values[key]:
            raise WebConfigError(f"{path}: {prefix}{key}: missing; TLS needs both cert_file and key_file")
    base = str(Path(path).parent)
    for key in ("cert_file", "key_file", "client_ca_file"):
        # The toolkit resolves relative paths against the web config file's directory.
        if values[key] and not os.path.isabs(values[key]):
            values[key] = os.path.join(base, values[key])

    auth = values["client_auth_type"] or ("RequireAndVerifyClientCert" if values["client_ca_file"] else "NoClientCert")
    if auth == "RequireAnyClientCert":
        raise WebConfigError(
            f"{path}: {prefix}client_auth_type: RequireAnyClientCert (a certificate nobody verifies) is not "
            "supported; use RequireAndVerifyClientCert with client_ca_file"
        )
    if auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(f"{path}: {prefix}client_auth_type: {auth!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}")
    if CLIENT_AUTH_TYPES[auth] != ssl.CERT_NONE and not values["client_ca_file"]:
        raise WebConfigError(f"{path}: {prefix}client_ca_file: missing; {auth} needs the CA that signs clients")
    for key in ("min_version", "max_version"):
        if values[key] and values[key] not in TLS_VERSIONS:
            raise WebConfigError(f"{path}: {prefix}{key}: {values[key]!r} is not one of {', '.join(TLS_VERSIONS)}")
    min_version = values["min_version"] or "TLS12"
    if values["max_version"] and TLS_VERSIONS[values["max_version"]] < TLS_VERSIONS[min_version]:
        raise WebConfigError(f"{path}: {prefix}max_version: {values['max_version']} is below min_version {min_version}")

    ciphers = ""
    suites = section.get("cipher_suites")
    if suites is not None:
        if not isinstance(suites, list) or not all(isinstance(s, str) for s in suites):
            raise WebConfigError(f"{path}: {prefix}cipher_suites: expected a list of cipher suite names")
        unknown = [s for s in suites if s not in CIPHER_SUITES]
        if unknown:
            raise WebConfigError(f"{path}: {prefix}cipher_suites: unknown or unsupported suite {unknown[0]!r}")
        ciphers = ":".join(CIPHER_SUITES[s] for s in suites)
    prefer = section.get("prefer_server_cipher_suites")
    if prefer is not None and not isinstance(prefer, bool):
        raise WebConfigError(f"{path}: {prefix}prefer_server_cipher_suites: expected true or false")
    return TLSSettings(
        cert_file=values["cert_file"],
        key_file=values["key_file"],
        client_auth_type=auth,
        client_ca_file=values["client_ca_file"],
        min_version=min_version,
        max_version=values["max_version"],
        ciphers=ciphers,
    )


def _parse_users(raw: object, path: str) -> dict[str, bytes]:
    if raw is None:
        return {}
    section = _mapping(raw, path, "basic_auth_users")
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        where = f"{path}: basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"{where}: a user name must be a non-empty string without ':'")
        if not isinstance(hashed, str) or not _BCRYPT_HASH.match(hashed):
            raise WebConfigError(
                f"{where}: expected a bcrypt hash ($2b$..., 60 characters), as `htpasswd -nBC 10 {user}` "
                "or Python's bcrypt.hashpw() print"
            )
        users[user] = hashed.encode()
    return users


def _parse_http(raw: object, path: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    prefix = "http_server_config."
    section = _mapping(raw, path, "http_server_config")
    _known(section, {"headers", "http2"}, path, prefix)
    if section.get("http2") is not None and not isinstance(section["http2"], bool):
        raise WebConfigError(f"{path}: {prefix}http2: expected true or false")  # accepted; HTTP/1.1 is served
    headers = section.get("headers")
    if headers is None:
        return ()
    table = _mapping(headers, path, f"{prefix}headers")
    result = []
    for name, value in table.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise WebConfigError(f"{path}: {prefix}headers: {name!r} is not a valid header name")
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
            raise WebConfigError(f"{path}: {prefix}headers.{name}: expected a one-line string")
        if name.lower() in ("authorization", "www-authenticate", "content-length", "content-type", "set-cookie"):
            raise WebConfigError(f"{path}: {prefix}headers.{name}: this header cannot be set")
        result.append((name, value))
    return tuple(result)


# ---------------------------------------------------------------------------------------------------- TLS


def build_ssl_context(tls: TLSSettings, path: str = "web config") -> ssl.SSLContext:
    """A server context from the files as they are now; every failure names the key it came from."""
    prefix = f"{path}: tls_server_config."
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    if tls.max_version:
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    for key, file in (("cert_file", tls.cert_file), ("key_file", tls.key_file), ("client_ca_file", tls.client_ca_file)):
        if file and not os.path.isfile(file):
            reason = "does not exist" if not os.path.exists(file) else "is not a regular file"
            raise WebConfigError(f"{prefix}{key}: {file} {reason}")
        if file and not os.access(file, os.R_OK):
            raise WebConfigError(f"{prefix}{key}: {file}: permission denied")
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except ssl.SSLError as exc:
        raise WebConfigError(
            f"{prefix}cert_file/key_file: cannot load {tls.cert_file} with {tls.key_file}: {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise WebConfigError(f"{prefix}cert_file: {tls.cert_file}: {exc.strerror or exc}") from None
    ctx.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            reason = str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)
            raise WebConfigError(f"{prefix}client_ca_file: cannot load {tls.client_ca_file}: {reason}") from None
    if tls.ciphers:
        try:
            ctx.set_ciphers(tls.ciphers)
        except ssl.SSLError:
            raise WebConfigError(f"{prefix}cipher_suites: none of the suites is available") from None
    return ctx


class ReloadingTLS:
    """The server's SSLContext, whose handshakes switch to a fresh context when the files change.

    OpenSSL calls the SNI callback during every ClientHello (with or without a server name). There the
    files are stat()ed (three syscalls: cheap next to a handshake); when a stat key moved, a new context
    is loaded and handed to this connection and every later one. Protocol versions and verify mode
    are fixed when a connection is created, so every context is built with the same settings. A
    half-written pair (new certificate, old key) fails to load: the old context keeps serving and the
    next handshake tries again.
    """

    def __init__(self, tls: TLSSettings, path: str) -> None:
        self.tls = tls
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._files_stamp()
        self.context = build_ssl_context(tls, path)
        self.current = self.context
        self.reloads = 0
        self._failed_stamp: tuple[tuple[int, ...], ...] | None = None
        self.context.sni_callback = self._on_hello

    def _files_stamp(self) -> tuple[tuple[int, ...], ...]:
        stamp: list[tuple[int, ...]] = []
        for file in self.tls.files():
            try:
                st = os.stat(file)
                stamp.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            except OSError:
                stamp.append(())
        return tuple(stamp)

    def check(self) -> ssl.SSLContext:
        """The context to use now, reloaded first when the files changed since the last load."""
        stamp = self._files_stamp()
        if stamp == self._stamp or stamp == self._failed_stamp:
            return self.current
        with self._lock:
            if stamp == self._stamp:
                return self.current
            try:
                fresh = build_ssl_context(self.tls, self.path)
            except WebConfigError as exc:
                self._failed_stamp = stamp
                log.warning("TLS files changed but cannot be loaded, still serving the previous ones: %s", exc)
                return self.current
            self.current, self._stamp, self._failed_stamp = fresh, stamp, None
            self.reloads += 1
            log.info("TLS certificate reloaded from %s", self.tls.cert_file)
            return fresh

    def _on_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        current = self.check()
        if current is not ctx:
            connection.context = current


class ServerConfig(uvicorn.Config):
    """uvicorn's Config, serving TLS from a ReloadingTLS instead of a context built once from files."""

    def __init__(self, app: ASGIApp, *, reloading_tls: ReloadingTLS | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.reloading_tls = reloading_tls

    def load(self) -> None:
        super().load()
        if self.reloading_tls is not None:
            self.ssl = self.reloading_tls.context


# --------------------------------------------------------------------------------------------- basic auth


class BasicAuth:
    """HTTP basic auth for every path but the health endpoints.

    The user name is compared with hmac.compare_digest against every configured name, and an unknown
    name still costs one bcrypt check against a dummy hash of the same cost, so neither the time nor
    the answer tells a configured name from another. Good credentials are remembered by a salted
    SHA-256 of (user, password) so that scrapes do not pay bcrypt each time; failures are never cached.
    """

    def __init__(self, app: ASGIApp, users: dict[str, bytes]) -> None:
        self.app = app
        self.users = users
        self._salt = secrets.token_bytes(32)
        self._cache: set[bytes] = set()
        self._cache_lock = threading.Lock()
        rounds = max((int(_cost(h)) for h in users.values()), default=10)
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(rounds))
        self._challenge = [
            (b"www-authenticate", f'Basic realm="{REALM}"'.encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"cache-control", b"no-store"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUTHENTICATED_PATHS:
            await self.app(scope, receive, send)
            return
        credentials = _credentials(scope)
        if credentials is not None and await self._accept(*credentials):
            await self.app(scope, receive, send)
            return
        body = b"Unauthorized\n"
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [*self._challenge, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _accept(self, user: bytes, password: bytes) -> bool:
        key = hashlib.sha256(self._salt + len(user).to_bytes(4, "big") + user + password).digest()
        with self._cache_lock:
            if key in self._cache:
                return True
        ok = await run_in_threadpool(self.verify, user, password)
        if ok:
            with self._cache_lock:
                if len(self._cache) >= AUTH_CACHE_SIZE:
                    self._cache.clear()  # bounded: a flood of distinct good logins cannot grow memory
                self._cache.add(key)
        return ok

    def verify(self, user: bytes, password: bytes) -> bool:
        """The uncached check: constant-time name match, then exactly one bcrypt whatever the name."""
        hashed = self._dummy
        found = False
        for name, candidate in self.users.items():
            if hmac.compare_digest(name.encode(), user):
                hashed, found = candidate, True
        try:
            matches = bcrypt.checkpw(password, hashed)
        except ValueError:
            return False
        return found and matches


def _cost(hashed: bytes) -> str:
    match = _BCRYPT_HASH.match(hashed.decode())
    return match.group(1) if match else "10"


def _credentials(scope: Scope) -> tuple[bytes, bytes] | None:
    header = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value
            break
    scheme, _, encoded = header.strip().partition(b" ")
    if scheme.lower() != b"basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    # bcrypt looks at 72 bytes at most; a longer password must not be accepted for its prefix.
    if len(password) > 72:
        return None
    return user, password


def server_options(web: WebConfig) -> tuple[list[Middleware], dict[str, Any]]:
    """Middleware for the app (outermost first) and keyword arguments for ServerConfig."""
    middleware: list[Middleware] = []
    if web.headers:
        middleware.append(Middleware(ResponseHeaders, headers=web.headers))
    if web.users:
        middleware.append(Middleware(BasicAuth, users=web.users))
        if web.tls is None:
            log.warning("basic auth without TLS: passwords cross the network in clear text (%s)", web.path)
    options: dict[str, Any] = {}
    if web.tls is not None:
        options["reloading_tls"] = ReloadingTLS(web.tls, web.path)
    return middleware, options


__all__ = [
    "BasicAuth",
    "ReloadingTLS",
    "ServerConfig",
    "TLSSettings",
    "WebConfig",
    "WebConfigError",
    "build_ssl_context",
    "load_web_config",
    "parse_web_config",
    "server_options",
]
