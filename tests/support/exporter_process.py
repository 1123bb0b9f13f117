"""The exporter as users run it: its console script in a child process on a free loopback port, started
and waited for until /-/ready answers, stopped with SIGTERM as kubelet and systemd do."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from tests.support.common import LOOPBACK, free_port

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def console_script() -> str | None:
    """The `openvpn-exporter` script next to the running interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent / "openvpn-exporter"
    if here.exists() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("openvpn-exporter")


def exporter_command() -> list[str]:
    """How to start the exporter: the console script, or the module when the package is not installed."""
    script = console_script()
    return [script] if script else [sys.executable, "-m", "exporter"]


def stop_process(popen: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM, then SIGKILL if it does not exit within `timeout`; the exit status."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout)
    return popen.returncode


def poll_process(
    popen: subprocess.Popen[Any],
    check: Callable[[], object],
    what: str,
    *,
    timeout: float = START_TIMEOUT,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Poll `check` until it is truthy (a refused connection counts as not yet); fail at once, with the
    output, if the process exits, and at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if popen.poll() is not None:
            raise AssertionError(f"exporter exited ({popen.returncode}) waiting for {what}:\n{output()}")
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n{output()}")
        time.sleep(0.05)


def wait_ready(
    url: str,
    popen: subprocess.Popen[Any],
    *,
    timeout: float = START_TIMEOUT,
    output: Callable[[], str] = lambda: "",
    **client_options: Any,
) -> None:
    """Poll `url`/-/ready until it answers 200."""
    with httpx.Client(timeout=2.0, **client_options) as client:
        ready = f"{url}/-/ready"
        poll_process(popen, lambda: client.get(ready).status_code == 200, ready, timeout=timeout, output=output)


class ExporterProcess:
    """One running exporter with `--config.file=config` on a free 127.0.0.1 port.

    Its output goes to `log` (stdout and stderr, unless `stdout` says otherwise). `command` defaults to
    `exporter_command()`. `http` is a client bound to `url`; pass `client_options` (e.g. `verify=`, `cert=`)
    and `scheme="https"` when TLS is on."""

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        extra_args: Sequence[str] = (),
        command: Sequence[str] | None = None,
        scheme: str = "http",
        client_options: dict[str, Any] | None = None,
        stdout: int | IO[bytes] = subprocess.STDOUT,
        timeout: float = START_TIMEOUT,
    ) -> None:
        self.port = free_port()
        self.url = f"{scheme}://{LOOPBACK}:{self.port}"
        self.log_path = log
        self._client_options = client_options or {}
        self.command = [
            *(command or exporter_command()),
            f"--config.file={config}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            *extra_args,
        ]
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out if stdout == subprocess.STDOUT else stdout,
                stderr=out,
            )
        self.http = httpx.Client(base_url=self.url, timeout=10.0, **self._client_options)
        try:
            wait_ready(self.url, self.popen, timeout=timeout, output=self.output, **self._client_options)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_until(self, check: Callable[[], object], what: str, timeout: float = START_TIMEOUT) -> None:
        poll_process(self.popen, check, what, timeout=timeout, output=self.output)

    def signal(self, signum: signal.Signals) -> None:
        self.popen.send_signal(signum)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        self.http.close()
        return stop_process(self.popen, timeout)

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
