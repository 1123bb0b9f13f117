"""The exporter as a real process (its console script), for tests that need signals or a real scrape."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.helpers import free_port


def exporter_command() -> list[str]:
    script = Path(sys.executable).parent / "openvpn-exporter"
    if script.exists() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("openvpn-exporter")
    return [found] if found else [sys.executable, "-m", "exporter"]


class RunningExporter:
    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (lives as long as the process)
        self.popen = subprocess.Popen(
            [*exporter_command(), f"--config.file={config_path}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        self.wait_until(lambda: self.http.get("/-/ready").status_code == 200, "the exporter to be ready")

    def wait_until(self, check: object, what: str, timeout: float = 15.0) -> None:
        assert callable(check)
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise AssertionError(f"exporter exited ({self.popen.returncode}) waiting for {what}:\n{self.output()}")
            try:
                if check():
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")
            time.sleep(0.05)

    def signal(self, signum: signal.Signals) -> None:
        self.popen.send_signal(signum)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.http.close()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()

    def __enter__(self) -> RunningExporter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
