"""The exporter, run as users run it, against the lab's real OpenVPN servers (status-version 1, 2, 3)."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.common import SESSION_KEYS, wait_for

from . import statusfile
from .conftest import Deployment
from .exporterproc import Exporter
from .lab import Server
from .promtext import Scrape

pytestmark = pytest.mark.integration


def _sessions_settled(dep: Deployment) -> Scrape:
    return dep.exporter.poll_metrics(
        lambda s: (
            s.value("ovpn_sessions_total") == dep.expected_sessions()
            and set(s.by_client("ovpn_bytes_in_total")) == dep.expected_labels()
        ),
        what=f"{dep.expected_sessions()} sessions and labels {sorted(dep.expected_labels())}",
    )


def test_probe_success_carries_the_openvpn_version(deployment: Deployment) -> None:
    scrape = _sessions_settled(deployment)
    probes = scrape.named("probe_success")
    assert len(probes) == 1, scrape.text
    assert probes[0].label("version") == deployment.expected_version()
    if deployment.status_version != 1:
        assert re.fullmatch(r"2\.6\.\d+", probes[0].label("version") or "")
    # Alert rules match this line literally: an integer, never 1.0.
    assert scrape.raw_lines("probe_success") == [f'probe_success{{version="{deployment.expected_version()}"}} 1']


def test_ovpn_info_names_the_product(deployment: Deployment) -> None:
    scrape = _sessions_settled(deployment)
    info = scrape.named("ovpn_info")
    if deployment.status_version == 1:
        # Nothing in a v1 file names the product: whatever is reported must stay one series.
        assert len(info) <= 1, scrape.text
        return
    assert [(s.label("product"), s.label("version"), s.value) for s in info] == [
        ("OpenVPN", deployment.lab.version, 1.0)
    ]


def test_sessions_total_equals_connected_clients(deployment: Deployment) -> None:
    scrape = _sessions_settled(deployment)
    assert scrape.raw_lines("ovpn_sessions_total") == [f"ovpn_sessions_total {deployment.expected_sessions()}"]


def test_one_series_per_client_label_and_no_duplicates(deployment: Deployment) -> None:
    scrape = _sessions_settled(deployment)
    assert scrape.duplicates() == []
    for name in ("ovpn_bytes_in_total", "ovpn_bytes_out_total"):
        labels = [s.label("client") for s in scrape.named(name)]
        assert Counter(labels) == Counter(deployment.expected_labels()), name
    prom = deployment.exporter.metrics("/prom")
    assert prom.duplicates() == []
    assert prom.value("ovpn_sessions_total") is not None


def _sum_by_label(server: Server, snap: statusfile.Snapshot) -> dict[str, tuple[int, int]]:
    sums: dict[str, tuple[int, int]] = {}
    for row in snap.rows:
        rx, tx = sums.get(f"{row.common_name}_{server.proto}", (0, 0))
        sums[f"{row.common_name}_{server.proto}"] = (rx + row.bytes_received, tx + row.bytes_sent)
    return sums


def test_duplicate_cn_sessions_are_summed(deployment: Deployment) -> None:
    """Sessions sharing a label are reported as one series whose value is the sum of the rows."""
    _sessions_settled(deployment)
    server = deployment.udp
    deadline = time.monotonic() + 15
    while True:
        # The file changes every second: compare only when it did not change across the scrape.
        before = server.status.read_bytes()
        scrape = deployment.exporter.metrics()
        after = server.status.read_bytes()
        if before == after:
            snap = statusfile.parse(before.decode())
            want = _sum_by_label(server, snap)
            got = {
                label: (
                    int(scrape.by_client("ovpn_bytes_in_total")[label]),
                    int(scrape.by_client("ovpn_bytes_out_total")[label]),
                )
                for label in want
            }
            if got == want:
                break
        if time.monotonic() > deadline:
            raise AssertionError(f"bytes per label never matched the sum of the file's rows: {got} != {want}")
        time.sleep(0.1)
    assert Counter(r.common_name for r in snap.rows)["twin"] == 2


def test_byte_counters_grow_after_traffic(deployment: Deployment) -> None:
    scrape = _sessions_settled(deployment)
    payload = 200_000
    clients = [deployment.client("twin", "udp"), deployment.client("alice", "tcp")]
    before = {
        c.label: (scrape.by_client("ovpn_bytes_in_total")[c.label], scrape.by_client("ovpn_bytes_out_total")[c.label])
        for c in clients
    }
    for client in clients:
        assert deployment.lab.send_through(client, payload) >= payload

    def grown(s: Scrape) -> bool:
        bin_, bout = s.by_client("ovpn_bytes_in_total"), s.by_client("ovpn_bytes_out_total")
        return all(
            bin_.get(label, 0) - rx >= payload and bout.get(label, 0) - tx >= payload
            for label, (rx, tx) in before.items()
        )

    deployment.exporter.poll_metrics(grown, what=f"bytes in and out of {sorted(before)} to grow by {payload}")


def _server_view(dep: Deployment) -> Counter[tuple[str, ...]]:
    view: Counter[tuple[str, ...]] = Counter()
    for server in (dep.udp, dep.tcp):
        for r in server.truth().rows:
            # status-version 1 has no Client ID column: the exporter cannot know it then.
            cid = r.client_id if dep.status_version != 1 else "-"
            view[(server.proto, r.common_name, r.real_host, r.real_port, r.virtual_address, cid or "")] += 1
    return view


def _exporter_view(dep: Deployment, rows: list[dict[str, str]]) -> Counter[tuple[str, ...]]:
    view: Counter[tuple[str, ...]] = Counter()
    for s in rows:
        cid = s["p2uniqueid"] if dep.status_version != 1 else "-"
        view[(s["protocol"], s["remoteid"], s["remotehost"], s["remoteport"], s["remotets"], cid)] += 1
    return view


def test_sessions_json_matches_the_servers_own_view(deployment: Deployment) -> None:
    _sessions_settled(deployment)
    rows: list[dict[str, str]] = []

    def agree() -> bool:
        nonlocal rows
        rows = deployment.exporter.sessions()
        return _exporter_view(deployment, rows) == _server_view(deployment)

    try:
        wait_for(agree, 15, "/sessions to match the management interface's status 3")
    except TimeoutError:
        assert _exporter_view(deployment, rows) == _server_view(deployment)
    resp = deployment.exporter.get("/sessions")
    assert resp.headers["content-type"].startswith("application/json")
    for row in rows:
        assert list(row) == SESSION_KEYS
        assert all(isinstance(v, str) for v in row.values()), row
        assert row["server"] == "openvpn-server"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["established"]), row
        assert row["bytesin"].isdigit() and row["bytesout"].isdigit(), row
        assert (row["packetsin"], row["packetsout"]) == ("0", "0")
    # /sessions_local is the same list (byte counts may move between two requests, identities may not).
    local = deployment.exporter.get("/sessions_local").json()
    assert sorted((r["remoteid"], r["remotehost"], r["remoteport"]) for r in local) == sorted(
        (r["remoteid"], r["remotehost"], r["remoteport"]) for r in rows
    )


def test_a_client_that_disconnects_disappears(deployment: Deployment) -> None:
    _sessions_settled(deployment)
    lab = deployment.lab
    leavers = [lab.start_client("leaver", deployment.udp), lab.start_client("leaver", deployment.tcp)]
    exp = deployment.exporter
    scrape = _sessions_settled(deployment)
    assert {"leaver_udp", "leaver_tcp"} <= set(scrape.by_client("ovpn_bytes_in_total"))
    for client in leavers:
        lab.stop_client(client)
    scrape = exp.poll_metrics(
        lambda s: (
            s.value("ovpn_sessions_total") == deployment.expected_sessions()
            and not {"leaver_udp", "leaver_tcp"} & set(s.by_client("ovpn_bytes_in_total"))
        ),
        timeout=15,
        what="the disconnected clients to disappear",
    )
    assert scrape.duplicates() == []
    assert all(row["remoteid"] != "leaver" for row in exp.sessions())


def test_a_stopped_server_turns_probe_success_to_zero(
    deployment: Deployment, exporter_binary: str, tmp_path: Path
) -> None:
    lab = deployment.lab
    server = lab.start_server("doomed", "udp", 1196, "10.10.0")
    client = lab.start_client("bystander", server)
    stale_after = 5
    exp = Exporter(
        exporter_binary, lab.root / "exporter-doomed", {"ovpnudpstatus": str(server.status), "stale_after": stale_after}
    )
    try:
        exp.poll_metrics(
            lambda s: s.value("probe_success") == 1 and s.value("ovpn_sessions_total") == 1,
            what="the doomed server's one session and probe_success 1",
        )
        lab.stop_server(server)
        stopped = time.monotonic()
        lab.stop_client(client)
        exp.poll_metrics(
            lambda s: s.value("probe_success") == 0, timeout=stale_after + 15, what="probe_success to drop to 0"
        )
        elapsed = time.monotonic() - stopped
        # The file is still there with its last content: only its age can have told the exporter.
        assert server.status.exists()
        assert statusfile.read(server.status).complete
        assert elapsed < stale_after + 15
        assert exp.get("/-/healthy").status_code == 200
    finally:
        exp.stop()
