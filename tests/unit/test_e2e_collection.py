"""The kind suite stays out of ordinary runs and comes in when asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _collect(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "E2E"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _e2e_items(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("tests/e2e/") and "::" in line]


def test_default_run_does_not_collect_the_kind_suite() -> None:
    whole = _collect("tests")
    assert _e2e_items(whole.stdout) == [], whole.stdout
    only = _collect("tests/e2e")
    assert _e2e_items(only.stdout) == []
    # Nothing collected, nothing skipped: pytest's "no tests" status, no skip noise.
    assert only.returncode == 5, only.stdout + only.stderr
    assert "skipped" not in only.stdout


def test_flag_or_variable_collects_the_kind_suite() -> None:
    for result in (_collect("--e2e", "tests/e2e"), _collect("tests/e2e", env_extra={"E2E": "1"})):
        assert result.returncode == 0, result.stdout + result.stderr
        items = _e2e_items(result.stdout)
        assert "tests/e2e/test_kind.py::test_helm_upgrade_applies_config_without_restarting_openvpn" in items
        # File order is run order: the upgrade, which replaces the pod, comes last.
        assert items[-1].endswith("test_helm_upgrade_applies_config_without_restarting_openvpn"), items
