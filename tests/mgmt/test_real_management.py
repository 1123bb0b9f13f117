"""The management source against real OpenVPN 2.6 servers and real clients (unix socket and TCP, with and
without a password). The TCP management port exists only inside the lab's namespace, so those checks run
there through `ip netns exec`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from exporter.sources.management import ManagementSource
from tests.mgmt.mgmtlab import PASSWORD, MgmtLab
from tests.support.exporter_process import ExporterProcess

pytestmark = pytest.mark.integration

PROBE = """
import json, sys
from exporter.sources.management import ManagementSource
source = ManagementSource("mgmt", sys.argv[1], "udp", sys.argv[2], 5.0)
readings = [source.refresh() for _ in range(2)]
print(json.dumps([{
    "available": r.available, "error": r.error, "errors": dict(r.read_errors), "last_update": r.last_update,
    "version": r.snapshot.version if r.snapshot else None,
    "sessions": [[s.common_name, s.virtual_address, s.protocol] for s in (r.snapshot.sessions if r.snapshot else ())],
} for r in readings]))
"""


def read_unix(address: str, password_file: str) -> list[dict[str, object]]:
    source = ManagementSource("mgmt", address, "udp", password_file, 5.0)
    out = []
    for _ in range(2):
        r = source.refresh()
        sessions = r.snapshot.sessions if r.snapshot else ()
        out.append({
            "available": r.available, "error": r.error, "errors": dict(r.read_errors), "last_update": r.last_update,
            "version": r.snapshot.version if r.snapshot else None,
            "sessions": [[s.common_name, s.virtual_address, s.protocol] for s in sessions],
        })  # fmt: skip
    return out


def read_inside(lab: MgmtLab, address: str, password_file: str) -> list[dict[str, object]]:
    result = lab.lab.run_inside([sys.executable, "-c", PROBE, address, password_file])
    assert result.returncode == 0, result.stderr
    readings: list[dict[str, object]] = json.loads(result.stdout)
    return readings


@pytest.mark.parametrize("case", ["unix", "unix-password", "tcp", "tcp-password"])
def test_source_reports_the_connected_client(mgmt_lab: MgmtLab, case: str) -> None:
    instance = mgmt_lab.instances[case]
    reader = read_inside if case.startswith("tcp") else (lambda lab, a, p: read_unix(a, p))
    readings = reader(mgmt_lab, instance.management, instance.password_file)
    # Two refreshes in a row: the second works only if the first quit and closed (one client at a time).
    for reading in readings:
        assert reading["error"] == "", instance.logs_text()
        assert reading["available"] is True
        assert reading["errors"] == {}
        assert reading["version"] == mgmt_lab.lab.version
        sessions = reading["sessions"]
        assert isinstance(sessions, list)
        assert [s[0] for s in sessions] == [instance.common_name]
        assert str(sessions[0][1]).startswith("10.93.")
        last_update = reading["last_update"]
        assert isinstance(last_update, float)
        # status 3 carries the server's current time in its TIME line.
        assert abs(time.time() - last_update) < 30


def test_tcp_management_is_reachable_only_inside_the_namespace(mgmt_lab: MgmtLab) -> None:
    instance = mgmt_lab.instances["tcp"]
    reading = ManagementSource("mgmt", instance.management, "udp", "", 1.0).refresh()
    assert not reading.available
    assert dict(reading.read_errors) == {"refused": 1}


@pytest.mark.parametrize("case", ["unix-password", "tcp-password"])
def test_wrong_or_missing_password_is_an_auth_error(mgmt_lab: MgmtLab, case: str, tmp_path: Path) -> None:
    instance = mgmt_lab.instances[case]
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the password\n")
    wrong.chmod(0o644)
    for password_file in (str(wrong), ""):
        if case.startswith("tcp"):
            (reading,) = read_inside(mgmt_lab, instance.management, password_file)[:1]
            errors = reading["errors"]
        else:
            errors = dict(ManagementSource("m", instance.management, "udp", password_file, 5.0).refresh().read_errors)
        assert errors == {"auth": 1}
    # The server is not left waiting on a half-authenticated client: the right password works at once.
    assert Path(instance.password_file).read_text().strip() == PASSWORD
    if case == "unix-password":
        assert ManagementSource("m", instance.management, "udp", instance.password_file, 5.0).refresh().available


def test_the_exporter_serves_management_sources(mgmt_lab: MgmtLab, tmp_path: Path) -> None:
    plain, protected = mgmt_lab.instances["unix"], mgmt_lab.instances["unix-password"]
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "server_name: mgmt-lab\nsources:\n"
        f"  - {{name: plain, management: '{plain.management}', protocol: udp}}\n"
        f"  - {{name: protected, management: '{protected.management}', protocol: udp, "
        f"password_file: '{protected.password_file}', timeout: 3s}}\n"
        "metrics: {extended: true}\n"
    )
    with ExporterProcess(config, tmp_path / "exporter.log") as proc:
        metrics = proc.http.get("/metrics").text
        assert "ovpn_sessions_total 2\n" in metrics
        assert f'probe_success{{version="{mgmt_lab.lab.version}"}} 1' in metrics
        for instance in (plain, protected):
            assert f'ovpn_bytes_in_total{{client="{instance.common_name}_udp"}}' in metrics
        assert 'ovpn_source_up{source="protected"} 1' in metrics
        sessions = proc.http.get("/sessions").json()
        assert sorted(s["remoteid"] for s in sessions) == sorted([plain.common_name, protected.common_name])
        assert {s["server"] for s in sessions} == {"mgmt-lab"}
