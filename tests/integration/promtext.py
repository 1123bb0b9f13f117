"""Reading what the exporter serves: Prometheus text samples, checked for duplicate series."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\[\\"n])*)"\s*(,)?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_line(line: str) -> Sample:
    """One sample line of the text format, names kept exactly as sent.

    (prometheus_client's parser renames a counter's samples to `<name>_total`, which would hide
    whether `ovpn_info` keeps its contract name.)
    """
    m = _NAME.match(line)
    if not m:
        raise ValueError(f"no metric name: {line!r}")
    name, pos = m.group(0), m.end()
    labels: list[tuple[str, str]] = []
    if line[pos : pos + 1] == "{":
        pos += 1
        while True:
            if line[pos : pos + 1] == "}":
                pos += 1
                break
            lm = _LABEL.match(line, pos)
            if not lm:
                raise ValueError(f"bad label set at {pos}: {line!r}")
            text = re.sub(r'\\[\\"n]', lambda e: _UNESCAPE[e.group(0)], lm.group(2))
            labels.append((lm.group(1), text))
            pos = lm.end()
            if not lm.group(3) and line[pos : pos + 1] != "}":
                raise ValueError(f"expected , or }} at {pos}: {line!r}")
    rest = line[pos:].split()
    if not 1 <= len(rest) <= 2 or not line[pos : pos + 1].isspace():
        raise ValueError(f"bad value part: {line!r}")
    value = float(rest[0])
    if math.isnan(value) and rest[0] != "NaN":
        raise ValueError(f"bad value: {line!r}")
    names = [k for k, _ in labels]
    if len(set(names)) != len(names):
        raise ValueError(f"repeated label name: {line!r}")
    return Sample(name, tuple(sorted(labels)), value)


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [parse_line(line) for line in text.splitlines() if line.strip() and not line.startswith("#")]

    def duplicates(self) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        """Series (name + label set) that appear more than once: Prometheus rejects such a scrape."""
        counts = Counter((s.name, s.labels) for s in self.samples)
        return [key for key, n in counts.items() if n > 1]

    def named(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]

    def value(self, name: str, **labels: str) -> float | None:
        want = tuple(sorted(labels.items()))
        for s in self.samples:
            if s.name == name and (not labels or s.labels == want):
                return s.value
        return None

    def by_client(self, name: str) -> dict[str, float]:
        return {s.label("client") or "": s.value for s in self.named(name)}

    def raw_lines(self, name: str) -> list[str]:
        """The sample lines as sent (to check integral values print as integers)."""
        return [ln for ln in self.text.splitlines() if ln.startswith((name + " ", name + "{"))]
