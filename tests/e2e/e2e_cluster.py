"""Cluster-side helpers of the kind end-to-end suite: settings from the environment, API clients,
polling with a deadline, running helm."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import e2e_support as sup
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

T = TypeVar("T")


@dataclass(frozen=True)
class E2EEnv:
    namespace: str
    release: str
    client_cn: str
    server_name: str
    chart: Path
    helm: str
    kube_context: str | None
    timeout: float

    def helm_cmd(self, *args: str) -> list[str]:
        cmd = [self.helm, *args, "--namespace", self.namespace]
        if self.kube_context:
            cmd += ["--kube-context", self.kube_context]
        return cmd

    @classmethod
    def from_environ(cls) -> E2EEnv:
        """Names default to what kind/e2e.sh uses; E2E_* variables point the suite at another setup."""
        return cls(
            namespace=os.environ.get("E2E_NAMESPACE", sup.DEFAULT_NAMESPACE),
            release=os.environ.get("E2E_RELEASE", sup.DEFAULT_RELEASE),
            client_cn=os.environ.get("E2E_CLIENT_CN", sup.DEFAULT_CLIENT_CN),
            server_name=os.environ.get("E2E_SERVER_NAME", sup.DEFAULT_SERVER_CN),
            chart=Path(os.environ.get("E2E_CHART", str(REPO_ROOT / "chart"))),
            helm=os.environ.get("HELM", "helm"),
            kube_context=os.environ.get("E2E_KUBE_CONTEXT") or None,
            timeout=float(os.environ.get("E2E_TIMEOUT", "180")),
        )


@dataclass(frozen=True)
class Kube:
    core: Any
    apps: Any
    custom: Any


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last error otherwise."""
    deadline = time.monotonic() + timeout
    last = "never returned a value"
    while True:
        try:
            result = probe()
            if result:
                return result
            last = f"last result: {result!r}"
        except Exception as exc:  # the API server or the pod may not be there yet: keep polling
            last = f"last error: {type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} ({last})")
        time.sleep(interval)


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
