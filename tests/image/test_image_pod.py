"""The pod, simulated with real containers: init container, OpenVPN server, exporter sidecar sharing the
server's network namespace and status directory, and a real OpenVPN client. Everything is checked
through the exporter, from inside the pod's network namespace.

The tests run in file order: the last one stops the exporter.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
import time
from pathlib import Path

from imagepod import (
    CLIENT_CN,
    EXPORTER_UID,
    FIGURES,
    FS_GROUP,
    MANAGEMENT_SOCKET,
    SERVER_NAME,
    VPN_SUBNET,
    Pod,
    docker,
    inspect,
    wait_for,
)

CLIENT_LABEL = f"{CLIENT_CN}_udp"


def _metric(body: str, name: str, labels: str = "") -> float | None:
    """Value of the sample `name{labels}` in an exposition, or None when there is no such line."""
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.MULTILINE)
    match = pattern.search(body)
    return float(match.group(1)) if match else None


def _metrics_with_session(pod: Pod) -> str | None:
    resp = pod.get("/metrics")
    if resp.status == 200 and re.search(r"^ovpn_sessions_total 1$", resp.body, re.MULTILINE):
        return resp.body
    return None


def test_init_container_prepares_status_files_for_the_exporter_uid(pod: Pod) -> None:
    assert pod.init_result.returncode == 0, pod.init_result.stderr
    for name in ("udp.status", "tcp.status"):
        st = (pod.status_dir / name).stat()
        assert stat.S_ISREG(st.st_mode)
        assert (st.st_uid, st.st_gid) == (EXPORTER_UID, FS_GROUP)
        assert stat.S_IMODE(st.st_mode) == 0o660


def test_openvpn_writes_into_the_prepared_file_and_keeps_its_mode(pod: Pod) -> None:
    path = pod.status_dir / "udp.status"
    wait_for("OpenVPN to write its status file", lambda: path.read_text().rstrip().endswith("END"))
    assert path.read_text().startswith("TITLE\tOpenVPN ")
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (EXPORTER_UID, FS_GROUP, 0o660)


def _proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f.read().splitlines() if ":" in line)}


def test_openvpn_runs_with_net_admin_only(pod: Pod) -> None:
    """OpenVPN wrote the status file above and serves the client with CAP_NET_ADMIN (12) and nothing else:
    no DAC_OVERRIDE, no MKNOD, no SETUID; the shared files reach it through the fsGroup."""
    fields = _proc_status(pod.server_pid)
    assert fields["Uid"].split()[1] == "0"
    assert int(fields["CapEff"], 16) == 1 << 12, fields["CapEff"]
    assert int(fields["CapBnd"], 16) == 1 << 12, fields["CapBnd"]
    assert str(FS_GROUP) in fields["Groups"].split()
    assert fields["NoNewPrivs"] == "1"


_MANAGEMENT_HELLO = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
data = b""
try:
    s.sendall(b"version\\n")
    while b"END" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError as exc:
    data += repr(exc).encode()
print(data.decode(errors="replace"))
"""


def test_management_socket_answers_the_exporter_user_only(pod: Pod) -> None:
    st = wait_for("the management socket", lambda: _stat_or_none(pod.status_dir / "udp-management.sock"))
    # OpenVPN binds the socket under umask 0 whatever the process umask: the file is open to every container
    # that mounts the volume, and --management-client-user is what limits it to the exporter.
    assert stat.S_ISSOCK(st.st_mode)
    # The exporter (uid 65532, whom --management-client-user names) gets the interface.
    mine = docker("exec", pod.exporter, "python3", "-c", _MANAGEMENT_HELLO, MANAGEMENT_SOCKET)
    assert "OpenVPN Version" in mine.stdout, mine.stdout
    # Another container of the pod, in the fsGroup too (it may open the socket), is turned away by OpenVPN.
    other = docker(
        "run", "--rm", "--network", f"container:{pod.server}", "--user", "1000:1000",
        "--group-add", str(FS_GROUP), "--cap-drop", "ALL", "--read-only",
        "--volume", f"{pod.status_dir}:/run/openvpn", "--entrypoint", "python3",
        inspect(pod.exporter)["Config"]["Image"], "-c", _MANAGEMENT_HELLO, MANAGEMENT_SOCKET,
    )  # fmt: skip
    assert "OpenVPN Version" not in other.stdout, other.stdout
    logs = docker("logs", pod.server)
    assert "connection rejected" in logs.stdout + logs.stderr


def test_health_endpoints_answer_in_the_pod_namespace(pod: Pod) -> None:
    for path in ("/-/healthy", "/-/ready"):
        resp = pod.get(path)
        assert resp.status == 200, (path, resp.body)
        assert resp.body.strip() == "OK"


def test_client_is_reported_on_metrics(pod: Pod) -> None:
    body = wait_for("the client to appear on /metrics", lambda: _metrics_with_session(pod), timeout=20)
    assert pod.openvpn_version, "could not read the OpenVPN version from the server's log"
    assert _metric(body, "ovpn_sessions_total") == 1
    assert _metric(body, "probe_success", f'{{version="{pod.openvpn_version}"}}') == 1
    assert _metric(body, "ovpn_info", f'{{product="OpenVPN",version="{pod.openvpn_version}"}}') == 1
    # keepalive 1 5 makes traffic flow every second, so both counters move.
    bytes_in = _metric(body, "ovpn_bytes_in_total", f'{{client="{CLIENT_LABEL}"}}')
    bytes_out = _metric(body, "ovpn_bytes_out_total", f'{{client="{CLIENT_LABEL}"}}')
    assert bytes_in is not None, body
    assert bytes_out is not None, body
    assert bytes_in > 0
    assert bytes_out > 0
    assert len(re.findall(r"^ovpn_bytes_in_total\{", body, re.MULTILINE)) == 1


def test_client_is_reported_on_sessions(pod: Pod) -> None:
    wait_for("the client to appear on /metrics", lambda: _metrics_with_session(pod), timeout=20)
    resp = pod.get("/sessions")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("application/json")
    sessions = json.loads(resp.body)
    assert isinstance(sessions, list)
    assert len(sessions) == 1
    (session,) = sessions
    assert all(isinstance(v, str) for v in session.values())
    assert session["server"] == SERVER_NAME
    assert session["protocol"] == "udp"
    assert session["remoteid"] == CLIENT_CN
    assert session["remotehost"] == "127.0.0.1"
    assert 0 < int(session["remoteport"]) < 65536
    assert ipaddress.ip_address(session["remotets"]) in VPN_SUBNET
    assert int(session["bytesin"]) > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", session["established"])
    local = pod.get("/sessions_local")
    assert local.status == 200
    assert [(s["remoteid"], s["protocol"]) for s in json.loads(local.body)] == [(CLIENT_CN, "udp")]
    assert list(json.loads(local.body)[0]) == list(session)


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def test_exporter_runs_as_numeric_uid_without_privileges(pod: Pod) -> None:
    with open(f"/proc/{pod.exporter_pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    assert fields["Uid"].split() == [str(EXPORTER_UID)] * 4
    assert fields["Gid"].split() == [str(EXPORTER_UID)] * 4
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, cap
    assert fields["NoNewPrivs"].strip() == "1"


def test_exporter_root_filesystem_and_status_volume_are_read_only(pod: Pod) -> None:
    mounts: dict[str, set[str]] = {}
    with open(f"/proc/{pod.exporter_pid}/mountinfo") as f:
        for line in f:
            parts = line.split()
            # field 5 is the mount point, field 6 the per-mount options
            mounts[parts[4]] = set(parts[5].split(","))
    assert "ro" in mounts["/"], mounts["/"]
    assert "ro" in mounts["/run/openvpn"], mounts["/run/openvpn"]
    assert "ro" in mounts["/etc/openvpn-exporter/exporter.yaml"]


def test_exporter_stops_within_two_seconds_on_sigterm(pod: Pod) -> None:
    assert inspect(pod.exporter)["State"]["Running"]
    start = time.monotonic()
    docker("stop", "--time", "10", pod.exporter, timeout=30)
    elapsed = time.monotonic() - start
    FIGURES["exporter stop on SIGTERM"] = f"{elapsed:.2f} s"
    state = inspect(pod.exporter)["State"]
    assert elapsed < 2.0, f"docker stop took {elapsed:.2f} s"
    assert state["ExitCode"] == 0, state
    assert not state["OOMKilled"]
