"""Glob sources: one source per matching file, followed as files appear and disappear."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from exporter.config import parse_config
from exporter.hub import Hub
from exporter.views.metrics import render_metrics
from exporter.views.selfmetrics import ExporterCollector
from tests.support.common import CAPTURED

UDP_V3 = CAPTURED / "server-udp-status-v3.log"  # client1 x2, client2
TCP_V3 = CAPTURED / "server-tcp-userpass-status-v3.log"  # client2 (bob), client3 (alice)


def hub_for(pattern: str, name: str = "inst", extra: str = "") -> Hub:
    return Hub(
        parse_config(f"stale_after: 0\nsources:\n  - name: {name}\n    path: '{pattern}'\n    protocol: udp\n{extra}")
    )


def names(hub: Hub) -> list[str]:
    return [r.name for r in hub.refresh().readings]


def test_each_match_is_its_own_source_and_files_come_and_go(tmp_path: Path) -> None:
    hub = hub_for(f"{tmp_path}/*.status")
    assert names(hub) == []
    assert not hub.refresh().up

    shutil.copy(UDP_V3, tmp_path / "a.status")
    assert names(hub) == ["inst:a.status"]
    state = hub.refresh()
    assert state.up
    assert sum(1 for _ in state.sessions()) == 3

    shutil.copy(TCP_V3, tmp_path / "b.status")
    (tmp_path / "b.txt").write_text("not matched")
    state = hub.refresh()
    assert [r.name for r in state.readings] == ["inst:a.status", "inst:b.status"]
    assert [r.target for r in state.readings] == [str(tmp_path / "a.status"), str(tmp_path / "b.status")]
    assert sum(1 for _ in state.sessions()) == 5

    (tmp_path / "a.status").unlink()
    state = hub.refresh()
    assert [r.name for r in state.readings] == ["inst:b.status"]
    assert sorted(s.common_name for _, s in state.sessions()) == ["client2", "client3"]

    # A file that comes back is a fresh source again.
    shutil.copy(UDP_V3, tmp_path / "a.status")
    assert names(hub) == ["inst:a.status", "inst:b.status"]


def test_the_views_follow_the_matches(tmp_path: Path) -> None:
    config = parse_config(
        f"stale_after: 0\nsources:\n  - name: inst\n    path: '{tmp_path}/*.status'\n    protocol: udp\n"
        "metrics: {extended: true}\n"
    )
    hub = Hub(config)
    shutil.copy(UDP_V3, tmp_path / "one.status")
    shutil.copy(UDP_V3, tmp_path / "two.status")
    text = render_metrics(hub.refresh(), config.metrics)
    assert "ovpn_sessions_total 6\n" in text
    assert 'ovpn_source_sessions{source="inst:one.status"} 3' in text
    assert 'ovpn_source_sessions{source="inst:two.status"} 3' in text
    # The same CN in two instances of one protocol is one series, summed (the contract's rule).
    assert text.count('ovpn_bytes_in_total{client="client1_udp"}') == 1
    (tmp_path / "two.status").unlink()
    state = hub.refresh()
    text = render_metrics(state, config.metrics)
    assert "inst:two.status" not in text
    assert "ovpn_sessions_total 3\n" in text
    # The exporter's own per-source metrics follow as well.
    collected = {s.labels.get("source") for m in ExporterCollector(lambda: state, "x").collect() for s in m.samples}
    assert "inst:two.status" not in collected
    assert "inst:one.status" in collected


def test_matches_in_different_directories_never_share_a_name(tmp_path: Path) -> None:
    for instance in ("east", "west"):
        (tmp_path / instance).mkdir()
        shutil.copy(UDP_V3, tmp_path / instance / "server.status")
    hub = hub_for(f"{tmp_path}/*/server.status")
    assert names(hub) == ["inst:east/server.status", "inst:west/server.status"]


def test_sockets_and_directories_are_not_status_files(tmp_path: Path) -> None:
    shutil.copy(UDP_V3, tmp_path / "udp.status")
    (tmp_path / "dir.status").mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "mgmt.status"))
    try:
        hub = hub_for(f"{tmp_path}/*")
        assert names(hub) == ["inst:udp.status"]
        assert hub.refresh().up
    finally:
        listener.close()


def test_two_glob_sources_with_overlapping_names_keep_their_own_matches(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    shutil.copy(UDP_V3, tmp_path / "x" / "s.status")
    shutil.copy(TCP_V3, tmp_path / "y" / "s.status")
    hub = Hub(
        parse_config(
            "stale_after: 0\nsources:\n"
            f"  - {{name: a, path: '{tmp_path}/x/*.status'}}\n"
            f"  - {{name: 'a:s.status', path: '{tmp_path}/y/*.status'}}\n"
        )
    )
    for _ in range(2):
        assert names(hub) == ["a:s.status", "a:s.status:s.status"]


def test_a_match_that_turns_unreadable_is_down_but_others_stay_up(tmp_path: Path) -> None:
    shutil.copy(UDP_V3, tmp_path / "a.status")
    shutil.copy(TCP_V3, tmp_path / "b.status")
    hub = hub_for(f"{tmp_path}/*.status")
    hub.refresh()
    (tmp_path / "b.status").write_text("garbage\n")
    state = hub.refresh()
    by_name = dict(zip((r.name for r in state.readings), state.up_flags, strict=True))
    assert by_name["inst:a.status"] is True
    assert state.up
    # b keeps its last complete snapshot (the file source's rule), counted as a read error.
    b = next(r for r in state.readings if r.name == "inst:b.status")
    assert b.read_errors
