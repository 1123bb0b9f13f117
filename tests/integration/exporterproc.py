"""The exporter as users run it: its console script in a separate process, configured by a YAML file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from .lab import free_port, wait_for
from .promtext import Scrape

START_TIMEOUT = 15.0


def exporter_bin() -> str | None:
    """The console script next to the running interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent / "openvpn-exporter"
    if here.exists() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("openvpn-exporter")


class Exporter:
    def __init__(self, binary: str, workdir: Path, config: dict[str, Any], name: str = "exporter") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.out"
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(
                [binary, "--config.file", str(self.config_path), "--web.listen-address", f"127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=self.base, timeout=10.0)
        try:
            wait_for(self._ready, START_TIMEOUT, f"the exporter on {self.base} to answer /-/ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.popen.poll() is not None:
            raise RuntimeError(f"exporter exited with {self.popen.returncode}:\n{self.output()}")
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

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

    def stop(self) -> int | None:
        self.http.close()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode
