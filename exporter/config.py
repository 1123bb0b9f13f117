"""exporter.yaml: load, validate, and turn into an immutable Config.

The keys of each section are declared as tables (exporter.schema): a reader per key, with its type,
bounds and default. Every problem becomes one ConfigError line naming the file, the key and what is
wrong; the command line prints it and exits 2, a reload logs it and keeps the running configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.schema import (
    MAX_PATH,
    ConfigError,
    Key,
    Table,
    choice,
    duration,
    flag,
    integer,
    items,
    parse_duration,
    path,
    read_section,
    text,
    type_name,
)
from exporter.yamlfile import MAX_MESSAGE, clip, parse_yaml, read_config_text, show

DEFAULT_SERVER_NAME = "openvpn-server"
# OpenVPN's own default `status` refresh is 60 s and an idle server rewrites every ~10 s even with
# `status FILE 1`: three missed default refreshes is a dead server, not a slow one.
DEFAULT_STALE_AFTER = 180.0
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024

# Both spellings of the original: its README's and its code's.
LEGACY_FILE_KEYS = {
    "ovpntcpstatus": ("tcp", "tcp"),
    "ovpn_tcp_status": ("tcp", "tcp"),
    "ovpnudpstatus": ("udp", "udp"),
    "ovpn_udp_status": ("udp", "udp"),
    "ovpn_status": ("status", "auto"),
}
PROTOCOLS = ("tcp", "udp", "auto")
# Labels a per-session series may carry (metrics.session_labels). None of them changes while a session
# lasts; real_address and client_id make one series per connection, so they are opt-in.
SESSION_LABELS = (
    "client",
    "common_name",
    "protocol",
    "username",
    "virtual_address",
    "real_address",
    "source",
    "client_id",
)
DEFAULT_SESSION_LABELS: tuple[str, ...] = ("client",)
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
# How often the config files are checked for a change (a kubelet ConfigMap update, an edit).
DEFAULT_CHECK_INTERVAL = 5.0
MAX_SOURCES = 256


@dataclass(frozen=True, slots=True)
class SourceConfig:
    name: str
    kind: str  # "file" or "management"
    target: str  # a path (maybe a glob) for files; a socket path or host:port for management
    protocol: str  # "tcp", "udp" or "auto"
    password_file: str = ""
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    per_client: bool = True
    extended: bool = False
    kumina_compat: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    session_labels: tuple[str, ...] = DEFAULT_SESSION_LABELS
    client_reconnects: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    server_name: str = DEFAULT_SERVER_NAME
    sources: tuple[SourceConfig, ...] = ()
    stale_after: float = DEFAULT_STALE_AFTER  # seconds; 0 turns staleness off
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    enable_reload_endpoint: bool = False
    config_check_interval: float = DEFAULT_CHECK_INTERVAL  # seconds; 0 turns the check off


def _session_label(value: Any, where: str) -> str:
    if value not in SESSION_LABELS:
        raise ConfigError(f"{where}: {show(value)} is not a session label (choose from {', '.join(SESSION_LABELS)})")
    return str(value)


def _session_labels(value: Any, where: str) -> tuple[str, ...]:
    chosen: tuple[str, ...] = items("a list of label names", _session_label, unique=True)(value, where)
    if not chosen:
        raise ConfigError(f"{where}: must name at least one label (per_client: false drops them)")
    return chosen


_PATTERNS = items("a list of glob patterns", text("glob pattern strings", limit=256))
METRICS: Table = {
    "per_client": Key(flag, True),
    "extended": Key(flag, False),
    "kumina_compat": Key(flag, False),
    "include": Key(_PATTERNS, ()),
    "exclude": Key(_PATTERNS, ()),
    "session_labels": Key(_session_labels, DEFAULT_SESSION_LABELS),
    "client_reconnects": Key(flag, False),
}
SOURCE: Table = {
    "name": Key(text("a string", limit=128, numbers=True), required="every source needs a name"),
    "path": Key(path("a file path or glob")),
    "management": Key(path("a socket path or host:port")),
    "protocol": Key(choice(*PROTOCOLS), "auto"),
    "password_file": Key(path()),
    # A whole management conversation must fit well inside a scrape; 0 would fail every one.
    "timeout": Key(duration(0.01, 300), 5.0),
}


def _metrics(value: Any, where: str) -> MetricsConfig:
    return MetricsConfig(**read_section(value, METRICS, where, f"{where}."))


def _sources(value: Any, where: str) -> tuple[SourceConfig, ...]:
    entries = items("a list of sources", lambda entry, _: entry, limit=MAX_SOURCES)(value, where)
    return tuple(_source(entry, f"{where}[{i}]") for i, entry in enumerate(entries))


TOP: Table = {
    # An empty value leaves a source unconfigured, as the original did.
    **{key: Key(text("a file path", limit=MAX_PATH), "") for key in LEGACY_FILE_KEYS},
    "server_name": Key(text("a string", limit=256, numbers=True), DEFAULT_SERVER_NAME),
    "sources": Key(_sources, ()),
    # Finite; at most about 300 years, which some tests use as "never stale".
    "stale_after": Key(duration(0, 1e10, zero=True), DEFAULT_STALE_AFTER),
    "max_file_bytes": Key(integer("a number of bytes", 1, 1 << 32), DEFAULT_MAX_FILE_BYTES),
    "metrics": Key(_metrics, MetricsConfig()),
    "enable_reload_endpoint": Key(flag, False),
    "config_check_interval": Key(duration(0.1, 3600, zero=True), DEFAULT_CHECK_INTERVAL),
}


def load_config(path: str | Path) -> Config:
    name = str(path)
    text = read_config_text(name, "config file", "--config.file", ConfigError)
    try:
        return parse_config(text, name)
    except ConfigError:
        raise
    except Exception as exc:  # a config fails one way only, whatever went wrong
        raise ConfigError(clip(f"{name}: cannot be used: {type(exc).__name__}: {exc}", MAX_MESSAGE)) from None


def parse_config(text: str, name: str = "exporter.yaml") -> Config:
    raw = parse_yaml(text, name, ConfigError)
    if raw is None:
        raise ConfigError(f"{name}: the config is empty: configure at least one status source")
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping of keys at the top, got {type_name(raw)}")
    values = read_section(raw, TOP, name, f"{name}: ")
    legacy: list[SourceConfig] = []
    for key, (source_name, protocol) in LEGACY_FILE_KEYS.items():
        target = values.pop(key)
        if target:
            if any(s.name == source_name for s in legacy):
                raise ConfigError(f"{name}: {key}: the {source_name} status file is configured twice")
            legacy.append(SourceConfig(source_name, "file", target, protocol))
    sources = (*legacy, *values.pop("sources"))
    _check_names(sources, name)
    return Config(path=name, sources=sources, **values)


def _check_names(sources: tuple[SourceConfig, ...], name: str) -> None:
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise ConfigError(f"{name}: sources: two sources are named {source.name!r}; names must differ")
        seen.add(source.name)
    if not sources:
        raise ConfigError(
            f"{name}: no status source configured: set ovpntcpstatus, ovpnudpstatus, ovpn_status or sources"
        )


def _source(raw: object, where: str) -> SourceConfig:
    values = read_section(raw, SOURCE, where, f"{where}: ")
    name = values["name"]
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name: {show(name)} may hold only letters, digits, '_', '.', ':' and '-'")
    if (values["path"] is None) == (values["management"] is None):
        raise ConfigError(f"{where}: set exactly one of path (a status file) or management (a socket)")
    kind = "file" if values["path"] is not None else "management"
    target = values["path"] if kind == "file" else values["management"]
    if values["password_file"] is not None and kind != "management":
        raise ConfigError(f"{where}: password_file: only a management source has a password")
    if kind == "management":
        _check_port(target, f"{where}: management")
    return SourceConfig(name, kind, target, values["protocol"], values["password_file"] or "", values["timeout"])


def _check_port(target: str, where: str) -> None:
    # The management source's rule (sources.management.parse_target): `host:port`, no '/', is TCP.
    host, sep, port = target.rpartition(":")
    if sep and port.isdigit() and "/" not in target and host and (len(port) > 5 or not 1 <= int(port) <= 65535):
        raise ConfigError(f"{where}: {show(target)}: the port must be from 1 to 65535")


__all__ = [
    "Config",
    "ConfigError",
    "MetricsConfig",
    "SourceConfig",
    "load_config",
    "parse_config",
    "parse_duration",
]
