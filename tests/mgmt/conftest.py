"""Fixtures of the management-interface suite: a lab of real OpenVPN servers, each with one real client."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.mgmt.mgmtlab import PASSWORD, Lab, MgmtLab, capability_problem, clean_leftovers
from tests.support.common import require_or_skip


@pytest.fixture(scope="session")
def mgmt_lab() -> Iterator[MgmtLab]:
    if os.geteuid() == 0 and shutil.which("ip"):
        clean_leftovers()
    problem = capability_problem()
    require_or_skip(problem is None, problem or "")
    lab = Lab()
    try:
        instances = {
            "unix": lab.start("unix", None),
            "unix-password": lab.start("unix", PASSWORD),
            "tcp": lab.start("tcp", None),
            "tcp-password": lab.start("tcp", PASSWORD),
        }
        for instance in instances.values():
            lab.wait_connected(instance)
        yield MgmtLab(lab, instances)
    finally:
        lab.close()
