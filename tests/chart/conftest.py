from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from chart_helpers import CHART, CONSUMER_CHART, helm, run_helm


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return helm()


@pytest.fixture(scope="session")
def consumer_chart(tmp_path_factory: pytest.TempPathFactory, helm_bin: str) -> Path:
    """A copy of the example consumer chart with its file:// dependency on ../../chart built."""
    root = tmp_path_factory.mktemp("consumer")
    shutil.copytree(CHART, root / "chart")
    shutil.copytree(
        CONSUMER_CHART, root / "examples" / "consumer-chart", ignore=shutil.ignore_patterns("charts", "Chart.lock")
    )
    target = root / "examples" / "consumer-chart"
    run_helm("dependency", "build", str(target))
    return target
