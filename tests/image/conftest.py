"""Container image suite: the fixtures live in imagepod.py (a uniquely named module, so that test files
can import its helpers whatever other conftest.py files the test tree has)."""

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imagepod
from imagepod import FIGURES, REPO, docker_engine, images, pod

__all__ = ["docker_engine", "images", "pod", "pytest_terminal_summary"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the figures (build times, image sizes, stop time) and keep them in test-artifacts, where CI
    keeps them beside the run."""
    imagepod.pytest_terminal_summary(terminalreporter)
    if FIGURES:
        out = REPO / "test-artifacts" / "image-figures.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(FIGURES, indent=2) + "\n")
        terminalreporter.write_line(f"figures written to {out.relative_to(REPO)}")
