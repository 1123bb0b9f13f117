"""Declared validation for the YAML configs: a section is a table of keys, each with a reader that
checks and converts its value, and a default.

Every failure is one ConfigError line: `<where><key>: <what is wrong>`, unknown keys with the nearest
known one. Readers bound what they accept (lengths, counts, ranges, finite numbers, no NUL bytes), so
that nothing a config can hold breaks the code that uses it later, and quote values through `show`,
so that no message grows with the input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.yamlfile import clip, show


class ConfigError(Exception):
    """One line, fit to print as it is."""


# (value, where) -> the converted value; raises ConfigError naming `where`.
Reader = Callable[[Any, str], Any]

MAX_PATH = 4096
MAX_ITEMS = 1000
_DURATION = re.compile(r"^(\d{1,15}(?:\.\d{1,9})?)(ms|s|m|h)?$")
DURATION_HINT = 'a duration such as 180, "90s" or "3m"'


@dataclass(frozen=True, slots=True)
class Key:
    read: Reader
    default: Any = None
    required: str = ""  # when set, the key must be present; the text says why


Table = Mapping[str, Key]


def type_name(value: object) -> str:
    return {
        str: "a string", int: "a number", float: "a fractional number", bool: "a boolean", list: "a list",
        dict: "a mapping", type(None): "nothing",
    }.get(type(value), type(value).__name__)  # fmt: skip


def suggest(key: str, known: Iterable[str]) -> str:
    names = sorted(known)
    import difflib  # only a misspelt key needs it

    close = difflib.get_close_matches(key[:100], names, n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(names)})"


def mapping(value: object, where: str, what: str = "a mapping") -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected {what}, got {type_name(value)}")
    return value


def read_section(raw: object, table: Table, where: str, prefix: str) -> dict[str, Any]:
    """Every key of `table` read from the mapping `raw` (its default when absent or null). `where`
    names the section, `prefix` is put before a key's name in messages ("file: metrics.")."""
    section = mapping(raw, where)
    for key in section:
        if key not in table:
            name = clip(str(key))
            raise ConfigError(f"{prefix}{name}: unknown key{suggest(name, table)}")
    values: dict[str, Any] = {}
    for key, spec in table.items():
        value = section.get(key)
        if value is None:
            if spec.required:
                raise ConfigError(f"{prefix}{key}: missing; {spec.required}")
            values[key] = spec.default
        else:
            values[key] = spec.read(value, f"{prefix}{key}")
    return values


# ------------------------------------------------------------------------------------------------ readers


def _typed(value: object, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}: expected {what}, got {type_name(value)}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {what}, got {type_name(value)}")
    return value


def text(what: str = "a string", *, limit: int = 1024, numbers: bool = False, empty: bool = True) -> Reader:
    """A one-line string of at most `limit` characters; `numbers` also takes 1 or 2.5 as their text."""

    def read(value: Any, where: str) -> str:
        kinds: tuple[type, ...] = (str, int, float) if numbers else (str,)
        result = str(_typed(value, kinds, where, what))
        if len(result) > limit:
            raise ConfigError(f"{where}: longer than {limit} characters")
        if "\x00" in result:
            raise ConfigError(f"{where}: holds a NUL byte")
        if not result and not empty:
            raise ConfigError(f"{where}: must not be empty")
        return result

    return read


def path(what: str = "a file path") -> Reader:
    return text(what, limit=MAX_PATH, empty=False)


def flag(value: Any, where: str) -> bool:
    return bool(_typed(value, bool, where, "true or false"))


def choice(*options: str) -> Reader:
    def read(value: Any, where: str) -> str:
        if value not in options:
            raise ConfigError(f"{where}: expected one of {', '.join(options)}, got {show(value)}")
        return str(value)

    return read


def integer(what: str, low: int, high: int) -> Reader:
    def read(value: Any, where: str) -> int:
        number = int(_typed(value, int, where, what))
        if not low <= number <= high:
            raise ConfigError(f"{where}: must be from {low} to {high}, got {show(number)}")
        return number

    return read


def parse_duration(value: object, where: str) -> float:
    """Seconds from a number or a Prometheus-style duration ("90s", "3m", "500ms"): finite, not negative."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected {DURATION_HINT}, got {show(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())):
        number, unit = float(match.group(1)), match.group(2) or "s"
        seconds = number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    else:
        raise ConfigError(f"{where}: expected {DURATION_HINT}, got {show(value)}")
    if not math.isfinite(seconds):
        raise ConfigError(f"{where}: expected a finite duration, got {show(value)}")
    if seconds < 0:
        raise ConfigError(f"{where}: must not be negative, got {show(value)}")
    return seconds


def duration(low: float, high: float, *, zero: bool = False) -> Reader:
    """Seconds within [low, high]; 0 as well when `zero` (it turns the feature off)."""

    def read(value: Any, where: str) -> float:
        seconds = parse_duration(value, where)
        if not (low <= seconds <= high or (zero and seconds == 0)):
            off = " (or 0 to turn it off)" if zero else ""
            raise ConfigError(f"{where}: must be from {low:g}s to {high:g}s{off}, got {show(value)}")
        return seconds

    return read


def items(what: str, item: Reader, *, limit: int = MAX_ITEMS, unique: bool = False) -> Reader:
    """A list of at most `limit` values, each read by `item` (and listed once, when `unique`)."""

    def read(value: Any, where: str) -> tuple[Any, ...]:
        entries = _typed(value, list, where, what)
        if len(entries) > limit:
            raise ConfigError(f"{where}: more than {limit} entries")
        result: list[Any] = []
        for entry in entries:
            converted = item(entry, where)
            if unique and converted in result:
                raise ConfigError(f"{where}: {show(converted)} is listed twice")
            result.append(converted)
        return tuple(result)

    return read


def unsupported(why: str) -> Reader:
    def read(value: Any, where: str) -> None:
        raise ConfigError(f"{where}: {why}")

    return read
