"""Modules that only some configurations need are not loaded by the others: every sidecar pays for what
it imports, in memory, on every node."""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded only when configured: --web.config.file (TLS, basic auth), a management source, the kumina and
# extended metric families.
OPTIONAL = ("bcrypt", "exporter.webconfig", "exporter.sources.management", "exporter.views.extended")

_LOADED = """
import json, sys
import exporter.cli, exporter.app
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_modules() -> set[str]:
    # A fresh interpreter: this test process has imported everything already.
    proc = subprocess.run([sys.executable, "-c", _LOADED], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(proc.stdout))


def test_a_plain_configuration_loads_no_optional_module() -> None:
    loaded = _loaded_modules()
    assert "exporter.hub" in loaded  # the probe did import the exporter
    assert not loaded & set(OPTIONAL), sorted(loaded & set(OPTIONAL))
