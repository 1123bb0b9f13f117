"""Self-checks of the lab: real OpenVPN servers and clients, read through their own status files.

These need no exporter. They make sure the other integration tests stand on what they believe: every
client is connected, the files have the columns the chosen status-version promises, and traffic really
crosses the tunnels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from tests.support.common import wait_for
from tests.support.netns import ip_bin, pid_alive

from .conftest import XSS, LabEnv
from .lab import MARKER, NS_PREFIX, Client, Server, clean_leftovers

pytestmark = pytest.mark.integration


def test_status_files_list_every_client(lab_env: LabEnv) -> None:
    for server in (lab_env.udp, lab_env.tcp):
        snap = server.snapshot()
        assert snap.complete, f"{server.status} does not end with exactly one END"
        want = Counter(c.common_name for c in lab_env.lab.connected(server))
        assert Counter(r.common_name for r in snap.rows) == want
        # Every session has its own Real Address (distinct 127.0.X.Y sources) and a pool address.
        assert sorted(r.real_host for r in snap.rows) == sorted(c.local_ip for c in lab_env.lab.connected(server))
        assert all(r.virtual_address.startswith(server.subnet + ".") for r in snap.rows)
        if lab_env.status_version == 1:
            assert snap.title is None
        else:
            assert snap.title is not None and snap.title.startswith(f"OpenVPN {lab_env.lab.version} ")
            assert snap.epoch is not None


def test_lab_has_duplicate_cn_and_shared_cn(lab_env: LabEnv) -> None:
    udp_cns = Counter(r.common_name for r in lab_env.udp.snapshot().rows)
    tcp_cns = Counter(r.common_name for r in lab_env.tcp.snapshot().rows)
    assert udp_cns["twin"] == 2, "duplicate-cn: two sessions with one CN"
    assert udp_cns["roamer"] == 1 and tcp_cns["roamer"] == 1, "one CN on both protocols"
    assert udp_cns[XSS] == 1, "OpenVPN keeps a CN with markup as it is"


def test_username_column(lab_env: LabEnv) -> None:
    if lab_env.status_version == 1:
        # Nothing to check but that the file really lacks the column (the reader reports None then).
        assert {r.username for r in lab_env.tcp.snapshot().rows} == {None}
        return
    tcp_users = {r.common_name: r.username for r in lab_env.tcp.snapshot().rows}
    assert tcp_users == {"alice": "alice", "roamer": XSS}
    assert {r.username for r in lab_env.udp.snapshot().rows} == {"UNDEF"}


def test_management_interface_agrees_with_status_file(lab_env: LabEnv) -> None:
    for server in (lab_env.udp, lab_env.tcp):

        def same(server: Server = server) -> bool:
            truth = {(r.common_name, r.real_address, r.virtual_address) for r in server.truth().rows}
            filed = {(r.common_name, r.real_address, r.virtual_address) for r in server.snapshot().rows}
            return truth == filed

        wait_for(same, 15, f"{server.name}: status file and management interface to agree")


def test_traffic_crosses_the_tunnels(lab_env: LabEnv) -> None:
    for client in (lab_env.client("twin", "udp"), lab_env.client("alice", "tcp")):

        def received(c: Client = client) -> int:
            return next(r.bytes_received for r in c.server.truth().rows if r.real_host == c.local_ip)

        before = received()
        echoed = lab_env.lab.send_through(client, 50_000)
        assert echoed >= 50_000
        # The server counts the encrypted packets, so at least the payload.
        assert received() - before >= 50_000


def test_tunnel_addresses_exist_only_inside_the_lab(lab_env: LabEnv) -> None:
    host = subprocess.run([ip_bin(), "-o", "addr"], capture_output=True, text=True, check=True).stdout
    inside = subprocess.run(
        [ip_bin(), "-n", lab_env.lab.ns, "-o", "addr"], capture_output=True, text=True, check=True
    ).stdout
    for server in (lab_env.udp, lab_env.tcp):
        assert f" {server.tunnel_ip}/" in inside
        assert f" {server.tunnel_ip}/" not in host


def test_leftovers_of_a_killed_run_are_cleaned(lab_host: None) -> None:
    """What a SIGKILLed run leaves (processes, namespaces, temp dirs) goes; a live run's things stay."""
    # The killed pytest's PID: pid_max itself, which no process can have (PIDs are below it), so that no
    # process started meanwhile can reuse it, as the PID of a process that exited could be.
    dead = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert not pid_alive(dead)
    mine = os.getpid()
    leftover_dir = Path(tempfile.gettempdir()) / f"{MARKER}{dead}-v9-leftover"
    live_dir = Path(tempfile.mkdtemp(prefix=f"{MARKER}{mine}-v9-"))
    leftover_dir.mkdir()
    ns_dead, ns_live = f"{NS_PREFIX}{dead}v9-lab", f"{NS_PREFIX}{mine}v9-lab"
    for ns in (ns_dead, ns_live):
        subprocess.run([ip_bin(), "netns", "add", ns], check=True)
    # A sleeper stands in for an orphaned openvpn: what matters is the marker path on its command line.
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    orphan = subprocess.Popen([*sleeper, str(leftover_dir / "server.conf")])
    keeper = subprocess.Popen([*sleeper, str(live_dir / "server.conf")])
    try:
        cleaned = clean_leftovers()
        try:
            assert orphan.wait(5) == -9
        except subprocess.TimeoutExpired:
            cmdline = Path(f"/proc/{orphan.pid}/cmdline").read_bytes()
            pytest.fail(f"the orphan {orphan.pid} ({cmdline!r}) was not killed; cleaned: {cleaned}")
        assert keeper.poll() is None
        assert not leftover_dir.exists() and live_dir.exists()
        names = subprocess.run([ip_bin(), "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert ns_dead not in names.split() and ns_live in names
    finally:
        keeper.kill()
        keeper.wait()
        if orphan.poll() is None:
            orphan.kill()
        for ns in (ns_dead, ns_live):
            subprocess.run([ip_bin(), "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(leftover_dir, ignore_errors=True)
        shutil.rmtree(live_dir, ignore_errors=True)
