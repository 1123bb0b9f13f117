"""Container image suite: the fixtures live in imagepod.py (a uniquely named module, so that test files
can import its helpers whatever other conftest.py files the test tree has)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imagepod import docker_engine, images, pod, pytest_terminal_summary

__all__ = ["docker_engine", "images", "pod", "pytest_terminal_summary"]
