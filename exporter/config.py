"""exporter.yaml: load, validate, and turn into an immutable Config.

Every problem becomes one ConfigError line naming the file, the key and what is wrong; the command
line prints it and exits 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.yamlfile import parse_yaml, read_config_text

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
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


class ConfigError(Exception):
    """One line, fit to print as it is."""


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
    client_reconnects: bool = False  # ovpn_client_reconnects_total on /prom: one series per client


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    server_name: str = DEFAULT_SERVER_NAME
    sources: tuple[SourceConfig, ...] = ()
    stale_after: float = DEFAULT_STALE_AFTER  # seconds; 0 turns staleness off
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    enable_reload_endpoint: bool = False


def parse_duration(value: object, where: str) -> float:
    """Seconds from a number or a Prometheus-style duration ("90s", "3m", "500ms")."""
    if isinstance(value, bool):
        raise ConfigError(f'{where}: expected a duration such as 180, "90s" or "3m", got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())):
        number, unit = float(match.group(1)), match.group(2) or "s"
        seconds = number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    else:
        raise ConfigError(f'{where}: expected a duration such as 180, "90s" or "3m", got {value!r}')
    if seconds < 0:
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
    return seconds


def _type_name(value: object) -> str:
    return {
        str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list",
        dict: "a mapping", type(None): "nothing",
    }.get(type(value), type(value).__name__)  # fmt: skip


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else ()):
        raise ConfigError(f"{where}: expected {what}, got {_type_name(value)}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {what}, got {_type_name(value)}")
    return value


def load_config(path: str | Path) -> Config:
    name = str(path)
    return parse_config(read_config_text(name, "config file", "--config.file", ConfigError), name)


def parse_config(text: str, name: str = "exporter.yaml") -> Config:
    raw = parse_yaml(text, name, ConfigError)
    if raw is None:
        raise ConfigError(f"{name}: the config is empty: configure at least one status source")
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping of keys at the top, got {_type_name(raw)}")

    known = {
        *LEGACY_FILE_KEYS, "server_name", "sources", "stale_after", "max_file_bytes", "metrics",
        "enable_reload_endpoint",
    }  # fmt: skip
    for key in raw:
        if key not in known:
            hint = _suggest(str(key), known)
            raise ConfigError(f"{name}: {key}: unknown key{hint}")

    sources: list[SourceConfig] = []
    for key, (source_name, protocol) in LEGACY_FILE_KEYS.items():
        if key not in raw or raw[key] in (None, ""):
            continue  # an empty value leaves the source unconfigured, as the original did
        value = _expect(raw[key], str, f"{name}: {key}", "a file path")
        if any(s.name == source_name for s in sources):
            raise ConfigError(f"{name}: {key}: the {source_name} status file is configured twice")
        sources.append(SourceConfig(source_name, "file", value, protocol))

    if "sources" in raw and raw["sources"] is not None:
        entries = _expect(raw["sources"], list, f"{name}: sources", "a list of sources")
        for i, entry in enumerate(entries):
            sources.append(_parse_source(entry, f"{name}: sources[{i}]"))

    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise ConfigError(f"{name}: sources: two sources are named {source.name!r}; names must differ")
        seen.add(source.name)
    if not sources:
        raise ConfigError(
            f"{name}: no status source configured: set ovpntcpstatus, ovpnudpstatus, ovpn_status or sources"
        )

    server_name = DEFAULT_SERVER_NAME
    if raw.get("server_name") is not None:
        server_name = str(_expect(raw["server_name"], (str, int, float), f"{name}: server_name", "a string"))
    stale_after = DEFAULT_STALE_AFTER
    if raw.get("stale_after") is not None:
        stale_after = parse_duration(raw["stale_after"], f"{name}: stale_after")
    max_bytes = DEFAULT_MAX_FILE_BYTES
    if raw.get("max_file_bytes") is not None:
        max_bytes = _expect(raw["max_file_bytes"], int, f"{name}: max_file_bytes", "a number of bytes")
        if max_bytes <= 0:
            raise ConfigError(f"{name}: max_file_bytes: must be positive, got {max_bytes}")
    reload_endpoint = False
    if raw.get("enable_reload_endpoint") is not None:
        reload_endpoint = _expect(
            raw["enable_reload_endpoint"], bool, f"{name}: enable_reload_endpoint", "true or false"
        )
    metrics = _parse_metrics(raw.get("metrics"), f"{name}: metrics")
    return Config(
        path=name,
        server_name=server_name,
        sources=tuple(sources),
        stale_after=stale_after,
        max_file_bytes=max_bytes,
        metrics=metrics,
        enable_reload_endpoint=reload_endpoint,
    )


def _suggest(key: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(sorted(known))})"


def _parse_source(raw: object, where: str) -> SourceConfig:
    entry: dict[str, Any] = _expect(raw, dict, where, "a mapping with name and path (or management)")
    known = {"name", "path", "management", "protocol", "password_file", "timeout"}
    for key in entry:
        if key not in known:
            raise ConfigError(f"{where}: {key}: unknown key{_suggest(str(key), known)}")
    if "name" not in entry:
        raise ConfigError(f"{where}: name: missing; every source needs a name")
    name = str(_expect(entry["name"], (str, int), f"{where}: name", "a string"))
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name: {name!r} may hold only letters, digits, '_', '.', ':' and '-'")
    has_path, has_mgmt = "path" in entry, "management" in entry
    if has_path == has_mgmt:
        raise ConfigError(f"{where}: set exactly one of path (a status file) or management (a socket)")
    kind = "file" if has_path else "management"
    target = _expect(entry["path" if has_path else "management"], str, f"{where}: {kind}", "a string")
    if not target:
        raise ConfigError(f"{where}: {'path' if has_path else 'management'}: must not be empty")
    protocol = entry.get("protocol", "auto")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{where}: protocol: expected one of tcp, udp, auto, got {protocol!r}")
    password_file = ""
    if entry.get("password_file") is not None:
        if kind != "management":
            raise ConfigError(f"{where}: password_file: only a management source has a password")
        password_file = _expect(entry["password_file"], str, f"{where}: password_file", "a file path")
    timeout = 5.0
    if entry.get("timeout") is not None:
        timeout = parse_duration(entry["timeout"], f"{where}: timeout")
        if timeout <= 0:
            raise ConfigError(f"{where}: timeout: must be positive")
    return SourceConfig(name, kind, target, protocol, password_file, timeout)


def _parse_metrics(raw: object, where: str) -> MetricsConfig:
    if raw is None:
        return MetricsConfig()
    section: dict[str, Any] = _expect(raw, dict, where, "a mapping")
    known = {"per_client", "extended", "kumina_compat", "include", "exclude", "session_labels", "client_reconnects"}
    for key in section:
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown key{_suggest(str(key), known)}")

    def flag(key: str, default: bool) -> bool:
        value = section.get(key)
        return default if value is None else bool(_expect(value, bool, f"{where}.{key}", "true or false"))

    def patterns(key: str) -> tuple[str, ...]:
        value = section.get(key)
        if value is None:
            return ()
        items = _expect(value, list, f"{where}.{key}", "a list of glob patterns")
        return tuple(str(_expect(p, str, f"{where}.{key}", "glob pattern strings")) for p in items)

    session_labels = DEFAULT_SESSION_LABELS
    if section.get("session_labels") is not None:
        items = _expect(section["session_labels"], list, f"{where}.session_labels", "a list of label names")
        chosen: list[str] = []
        for item in items:
            if item not in SESSION_LABELS:
                raise ConfigError(
                    f"{where}.session_labels: {item!r} is not a session label (choose from {', '.join(SESSION_LABELS)})"
                )
            if item in chosen:
                raise ConfigError(f"{where}.session_labels: {item!r} is listed twice")
            chosen.append(item)
        if not chosen:
            raise ConfigError(f"{where}.session_labels: must name at least one label (per_client: false drops them)")
        session_labels = tuple(chosen)

    return MetricsConfig(
        per_client=flag("per_client", True),
        extended=flag("extended", False),
        kumina_compat=flag("kumina_compat", False),
        include=patterns("include"),
        exclude=patterns("exclude"),
        session_labels=session_labels,
        client_reconnects=flag("client_reconnects", False),
    )
