"""The metric names a PromQL expression reads, and the names a running exporter really exposes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.support.common import CAPTURED
from tests.support.exporter_process import ExporterProcess

KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
     "inf", "nan", "Inf", "NaN"}
)  # fmt: skip
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*,\s*\w+\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (Grafana variables allowed)."""
    if match := _LABEL_VALUES.match(expr):
        return {match.group(1)}
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries, [$__rate_interval] included
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in KEYWORDS:
            continue
        names.add(word)
    return names


def exposed_names(workdir: Path) -> set[str]:
    """Sample names from a real /metrics and /prom scrape of the exporter run on the captured fixtures,
    with every optional family switched on and one unreadable source (so that read errors exist)."""
    status = workdir / "status"
    status.mkdir()
    shutil.copy(CAPTURED / "server-udp-status-v3.log", status / "udp.status")
    shutil.copy(CAPTURED / "server-tcp-userpass-status-v3.log", status / "tcp.status")
    config = workdir / "exporter.yaml"
    config.write_text(
        f"stale_after: 0\novpnudpstatus: {status / 'udp.status'}\novpntcpstatus: {status / 'tcp.status'}\n"
        f"sources:\n  - {{name: gone, path: {status / 'missing.status'}}}\n"
        "metrics: {extended: true, kumina_compat: true}\n"
    )
    names: set[str] = set()
    with ExporterProcess(config, workdir / "exporter.log") as proc:
        for path in ("/metrics", "/prom", "/metrics", "/prom"):
            response = proc.http.get(path)
            assert response.status_code == 200
            for line in response.text.splitlines():
                if line and not line.startswith("#"):
                    names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
