"""Modules that only some configurations need are not loaded by the others: every sidecar pays for what
it imports, in memory, on every node."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.common import CAPTURED, free_port
from tests.support.exporter_process import wait_ready

# Loaded only when configured: --web.config.file (TLS, basic auth), a management source, the kumina and
# extended metric families.
OPTIONAL = ("bcrypt", "exporter.webconfig", "exporter.sources.management", "exporter.views.extended")
# Never needed by a plain sidecar: the version is a constant (not package metadata), the stylesheet is read
# when a browser asks for it, and difflib only suggests a name for a misspelt config key.
UNNEEDED = ("importlib.metadata", "importlib.resources", "difflib")

_LOADED = """
import json, sys
import exporter.cli, exporter.app
print(json.dumps(sorted(sys.modules)))
"""

# The command as a sidecar runs it; what it imported is written out when SIGTERM ends it.
_SERVE = """
import atexit, json, sys
atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(sorted(sys.modules))))
from exporter.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _loaded_modules() -> set[str]:
    # A fresh interpreter: this test process has imported everything already.
    proc = subprocess.run([sys.executable, "-c", _LOADED], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(proc.stdout))


def test_a_plain_configuration_loads_no_optional_module() -> None:
    loaded = _loaded_modules()
    assert "exporter.hub" in loaded  # the probe did import the exporter
    assert not loaded & set(OPTIONAL), sorted(loaded & set(OPTIONAL))


def test_a_serving_sidecar_loads_only_what_its_configuration_needs(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text(f"ovpnudpstatus: {CAPTURED / 'server-udp-status-v3.log'}\nstale_after: 0\n")
    out, port = tmp_path / "modules.json", free_port()
    argv = [f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"]
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(out), *argv], stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, output=lambda: proc.stderr.read() if proc.stderr else "")
        for path in ("/metrics", "/sessions", "/static", "/prom"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    loaded = set(json.loads(out.read_text()))
    assert "exporter.hub" in loaded and "uvicorn" in loaded
    assert not loaded & {*OPTIONAL, *UNNEEDED}, sorted(loaded & {*OPTIONAL, *UNNEEDED})
