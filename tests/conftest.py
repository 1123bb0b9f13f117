"""Options shared by the whole test tree."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    # Registered here, above tests/e2e, so that `pytest --e2e` is accepted whatever paths are given.
    parser.addoption(
        "--e2e",
        action="store_true",
        default=False,
        help="collect and run the kind end-to-end suite in tests/e2e (needs a cluster from kind/e2e.sh)",
    )
