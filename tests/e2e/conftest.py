"""Fixtures of the kind end-to-end suite, and the switch that keeps it out of ordinary runs.

The suite needs a cluster prepared by kind/e2e.sh. It is collected only when asked for, with
`pytest --e2e tests/e2e` or `E2E=1 pytest tests/e2e`; otherwise `pytest` does not even collect it (no skips,
no "no tests ran" exit status). Once asked for, nothing skips: a missing cluster is a failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
# The tests import their helpers as `e2e_support`, whatever import mode pytest runs in.
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from e2e_cluster import E2EEnv, Kube  # noqa: E402  (needs the path above)


def e2e_enabled(config: pytest.Config) -> bool:
    # getoption with a default: the option is registered by tests/conftest.py, but this file must not break
    # a run where that conftest was not loaded.
    return bool(config.getoption("e2e", default=False)) or os.environ.get("E2E", "") not in ("", "0")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if e2e_enabled(config):
        return None
    if collection_path.name == "conftest.py":
        return None
    try:
        collection_path.resolve().relative_to(E2E_DIR)
    except ValueError:
        return None
    return True


@pytest.fixture(scope="session")
def e2e_env() -> E2EEnv:
    return E2EEnv.from_environ()


@pytest.fixture(scope="session")
def kube(e2e_env: E2EEnv) -> Iterator[Kube]:
    from kubernetes import client, config

    config.load_kube_config(context=e2e_env.kube_context)  # type: ignore[no-untyped-call]
    api = client.ApiClient()
    try:
        yield Kube(client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api))
    finally:
        api.close()  # type: ignore[no-untyped-call]
