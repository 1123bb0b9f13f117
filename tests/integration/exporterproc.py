"""The exporter as users run it, configured by a YAML file, with the scrapes the integration suite asserts on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.exporter_process import ExporterProcess

from .promtext import Scrape


class Exporter(ExporterProcess):
    def __init__(self, binary: str, workdir: Path, config: dict[str, Any], name: str = "exporter") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        super().__init__(self.config_path, workdir / f"{name}.out", command=[binary])
        self.base = self.url

    def output(self) -> str:
        return super().output()[-4000:]

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def metrics(self, path: str = "/metrics") -> Scrape:
        resp = self.http.get(path)
        assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text[:500]}"
        return Scrape(resp.text)

    def sessions(self) -> list[dict[str, str]]:
        resp = self.http.get("/sessions")
        assert resp.status_code == 200, f"GET /sessions: {resp.status_code} {resp.text[:500]}"
        data = resp.json()
        assert isinstance(data, list)
        return data

    def poll_metrics(self, predicate: Any, timeout: float = 15.0, what: str = "a matching scrape") -> Scrape:
        """Scrape until predicate(scrape) holds; on timeout fail showing the last scrape."""
        deadline = time.monotonic() + timeout
        while True:
            scrape = self.metrics()
            if predicate(scrape):
                return scrape
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}; last /metrics:\n"
                    f"{scrape.text}\nexporter output:\n{self.output()}"
                )
            time.sleep(0.2)
