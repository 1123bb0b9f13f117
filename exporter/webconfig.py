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
Basic auth (exporter.auth) covers every path but the health endpoints, which Kubernetes probes call
without credentials. The keys are declared as tables (exporter.schema), as exporter.yaml's are; a reload
of the running server (WebRuntime) replaces the users and the TLS files.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from exporter.auth import BCRYPT_HASH, BasicAuth, Passwords
from exporter.headers import ResponseHeaders
from exporter.schema import ConfigError, Key, Table, choice, flag, items, mapping, path, read_section, unsupported
from exporter.yamlfile import MAX_MESSAGE, clip, parse_yaml, read_config_text, show

log = logging.getLogger("openvpn_exporter")

# Go's exporter-toolkit names, and what Python's ssl module can do with each.
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    # Go would ask for a certificate and never check it; nothing uses it, so not asking is equivalent.
    "RequestClientCert": ssl.CERT_NONE,
    # Go requires a certificate without checking it; Python's TLS cannot require one without verifying
    # it, so this requires one verified against client_ca_file: stricter, never weaker.
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_ANY_HINT = dict.fromkeys(CLIENT_AUTH_TYPES, "") | {
    "RequireAnyClientCert": " (Python's TLS verifies every certificate it requires)"
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
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
MAX_USERS = 1000


class WebConfigError(ConfigError):
    """One line naming the web config file and the key: printed as is, exit 2 (or a rejected reload)."""


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
    try:
        raw = parse_yaml(text, path, ConfigError)
        values = read_section({} if raw is None else raw, TOP, path, f"{path}: ")  # empty: plain HTTP, no auth
        web = WebConfig(path, values["tls_server_config"], values["basic_auth_users"], values["http_server_config"])
        if web.tls is not None:
            # Fail at start, with the key named, rather than at the first handshake.
            build_ssl_context(web.tls, path)
    except WebConfigError:
        raise
    except ConfigError as exc:
        raise WebConfigError(str(exc)) from None
    except Exception as exc:  # a config fails one way only, whatever went wrong
        raise WebConfigError(clip(f"{path}: cannot be used: {type(exc).__name__}: {exc}", MAX_MESSAGE)) from None
    return web


def _tls(raw: object, where: str) -> TLSSettings:
    path = where.rpartition(": ")[0]
    values = read_section(raw, TLS_TABLE, where, f"{where}.")
    for key in ("cert_file", "key_file", "client_ca_file"):
        # The toolkit resolves relative paths against the web config file's directory.
        if values[key] and not os.path.isabs(values[key]):
            values[key] = os.path.join(os.path.dirname(path), values[key])
    ca, ciphers = values.pop("client_ca_file"), values.pop("cipher_suites")
    del values["prefer_server_cipher_suites"]  # accepted; the server's order is always preferred
    auth = values.pop("client_auth_type") or ("RequireAndVerifyClientCert" if ca else "NoClientCert")
    if CLIENT_AUTH_TYPES[auth] != ssl.CERT_NONE and not ca:
        raise ConfigError(f"{where}.client_ca_file: missing; {auth} needs the CA that signs clients{_ANY_HINT[auth]}")
    if values["max_version"] and TLS_VERSIONS[values["max_version"]] < TLS_VERSIONS[values["min_version"]]:
        raise ConfigError(f"{where}.max_version: {values['max_version']} is below min_version {values['min_version']}")
    return TLSSettings(
        values["cert_file"],
        values["key_file"],
        auth,
        ca,
        values["min_version"],
        values["max_version"],
        ":".join(CIPHER_SUITES[s] for s in ciphers),
    )


def _users(raw: object, where: str) -> dict[str, bytes]:
    section = mapping(raw, where)
    if len(section) > MAX_USERS:
        raise ConfigError(f"{where}: more than {MAX_USERS} users")
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        name = f"{where}.{clip(str(user))}"
        if not isinstance(user, str) or not user or ":" in user or len(user) > 256:
            raise ConfigError(f"{name}: a user name must be a non-empty string without ':'")
        match = BCRYPT_HASH.match(hashed) if isinstance(hashed, str) else None
        if match is None:
            raise ConfigError(
                f"{name}: expected a bcrypt hash ($2b$..., 60 characters), as `htpasswd -nBC 10 {clip(user, 40)}` "
                "or Python's bcrypt.hashpw() print"
            )
        if not 4 <= int(match.group(1)) <= 31:
            raise ConfigError(f"{name}: the bcrypt cost is {match.group(1)}; it must be from 04 to 31")
        users[user] = match.group(0).encode()
    return users


def _header(value: object, where: str) -> tuple[tuple[str, str], ...]:
    table = mapping(value, where)
    result = []
    for name, text in table.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name) or len(name) > 256:
            raise ConfigError(f"{where}: {show(name)} is not a valid header name")
        if not isinstance(text, str) or any(c in text for c in "\r\n\x00") or len(text) > 4096:
            raise ConfigError(f"{where}.{name}: expected a one-line string")
        if name.lower() in ("authorization", "www-authenticate", "content-length", "content-type", "set-cookie"):
            raise ConfigError(f"{where}.{name}: this header cannot be set")
        result.append((name, text))
    return tuple(result)


def _http(raw: object, where: str) -> tuple[tuple[str, str], ...]:
    headers: tuple[tuple[str, str], ...] = read_section(raw, HTTP_TABLE, where, f"{where}.")["headers"]
    return headers


_NOT_SUPPORTED = unsupported("not supported by openvpn-exporter")
_VERSION = choice(*TLS_VERSIONS)
TLS_TABLE: Table = {
    # First, so that an inline `cert` is named before the missing cert_file it stands for.
    **{key: Key(_NOT_SUPPORTED) for key in ("cert", "key", "client_ca", "client_allowed_sans", "curve_preferences")},
    "cert_file": Key(path(), required="TLS needs both cert_file and key_file"),
    "key_file": Key(path(), required="TLS needs both cert_file and key_file"),
    "client_auth_type": Key(choice(*CLIENT_AUTH_TYPES), ""),
    "client_ca_file": Key(path(), ""),
    "min_version": Key(_VERSION, "TLS12"),
    "max_version": Key(_VERSION, ""),
    "cipher_suites": Key(items("a list of cipher suite names", choice(*CIPHER_SUITES), unique=True), ()),
    "prefer_server_cipher_suites": Key(flag, True),
}
HTTP_TABLE: Table = {"headers": Key(_header, ()), "http2": Key(flag, False)}  # http2 accepted; HTTP/1.1 is served
TOP: Table = {
    "tls_server_config": Key(_tls),
    "http_server_config": Key(_http, ()),
    "basic_auth_users": Key(_users, {}),
}


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

    def replace(self, tls: TLSSettings, context: ssl.SSLContext) -> None:
        """New files (from a reloaded web config), with the context already loaded from them."""
        with self._lock:
            self.tls = tls
            self.current, self._stamp, self._failed_stamp = context, self._files_stamp(), None
            self.reloads += 1

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


class WebRuntime:
    """The web config in a running server. A reload replaces the users and the TLS files (and so the
    certificate, key and client CA); the rest is fixed when connections are set up, so a change there is
    refused with a line saying a restart applies it."""

    def __init__(self, web: WebConfig) -> None:
        self.web = web
        self.passwords = Passwords(web.users)
        self.tls = ReloadingTLS(web.tls, web.path) if web.tls is not None else None

    def middleware(self) -> list[Middleware]:
        """Outermost first. BasicAuth is there even with no users, so that a reload can add some."""
        middleware = [Middleware(ResponseHeaders, headers=self.web.headers)] if self.web.headers else []
        if self.web.users and self.web.tls is None:
            log.warning("basic auth without TLS: passwords cross the network in clear text (%s)", self.web.path)
        return [*middleware, Middleware(BasicAuth, users=self.passwords)]

    def options(self) -> dict[str, Any]:
        return {"reloading_tls": self.tls} if self.tls is not None else {}

    def prepare(self) -> Callable[[], None]:
        """Read the file again; the change to apply, or WebConfigError and nothing changed."""
        web = load_web_config(self.web.path)
        _check_reloadable(self.web, web)
        context = build_ssl_context(web.tls, web.path) if web.tls is not None else None

        def apply() -> None:
            self.passwords.replace(web.users)
            if self.tls is not None and web.tls is not None and context is not None:
                self.tls.replace(web.tls, context)
            self.web = web

        return apply


def _check_reloadable(old: WebConfig, new: WebConfig) -> None:
    restart = "; restart the exporter to apply it"
    if (old.tls is None) != (new.tls is None):
        raise WebConfigError(f"{new.path}: tls_server_config: TLS cannot be turned on or off by a reload{restart}")
    if old.tls is not None and new.tls is not None:
        for key in ("client_auth_type", "min_version", "max_version", "ciphers"):
            if getattr(old.tls, key) != getattr(new.tls, key):
                name = "cipher_suites" if key == "ciphers" else key
                raise WebConfigError(f"{new.path}: tls_server_config.{name}: changed{restart}")
    if old.headers != new.headers:
        raise WebConfigError(f"{new.path}: http_server_config.headers: changed{restart}")


def server_options(web: WebConfig) -> tuple[list[Middleware], dict[str, Any]]:
    """Middleware for the app (outermost first) and keyword arguments for ServerConfig."""
    runtime = WebRuntime(web)
    return runtime.middleware(), runtime.options()


__all__ = [
    "ReloadingTLS",
    "ServerConfig",
    "TLSSettings",
    "WebConfig",
    "WebConfigError",
    "WebRuntime",
    "build_ssl_context",
    "load_web_config",
    "parse_web_config",
    "server_options",
]
