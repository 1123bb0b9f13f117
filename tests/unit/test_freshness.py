"""A source that stops being rewritten is logged once when it goes stale and once when it is fresh again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exporter.config import parse_config
from exporter.hub import Hub
from tests.support.common import CAPTURED

V3 = (CAPTURED / "server-udp-status-v3.log").read_text()
WRITTEN = 1795756450  # the fixture's TIME line


def write_status(path: Path, epoch: int) -> None:
    path.write_text(V3.replace(f"\t{WRITTEN}\n", f"\t{epoch}\n"))


def freshness_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    records = [r for r in caplog.records if r.name == "openvpn_exporter" and r.module == "freshness"]
    return [(r.levelno, r.getMessage()) for r in records]


def test_stale_and_fresh_again_are_logged_once_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "udp.status"
    write_status(path, WRITTEN)
    now = [WRITTEN + 5.0]
    hub = Hub(parse_config(f"ovpnudpstatus: {path}\nstale_after: 60\n"), clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="openvpn_exporter")
    assert hub.refresh().up
    assert freshness_logs(caplog) == []
    # OpenVPN stops rewriting the file: the first scrape past stale_after logs it, with the age ...
    now[0] = WRITTEN + 61.4
    for _ in range(5):
        assert not hub.refresh().up
        now[0] += 10
    logs = freshness_logs(caplog)
    assert len(logs) == 1, logs
    level, message = logs[0]
    assert level == logging.WARNING
    assert f"source udp: {path} is stale, last updated 61 s ago (stale_after 60 s)" in message
    # ... and a rewrite brings it back, logged once too.
    write_status(path, int(now[0]) - 2)
    for _ in range(3):
        assert hub.refresh().up
    logs = freshness_logs(caplog)
    assert len(logs) == 2, logs
    assert logs[1] == (logging.INFO, f"source udp: {path} is fresh again (2 s old)")
    hub.close()


def test_a_source_stale_at_start_is_logged_once_and_a_missing_one_not_as_stale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "udp.status"
    write_status(path, WRITTEN)
    config = f"ovpnudpstatus: {path}\novpntcpstatus: {tmp_path / 'missing.status'}\nstale_after: 60\n"
    hub = Hub(parse_config(config), clock=lambda: WRITTEN + 3600.0)
    caplog.set_level(logging.INFO, logger="openvpn_exporter")
    hub.refresh()
    hub.refresh()
    logs = freshness_logs(caplog)
    assert [(level, "last updated 3600 s ago" in message) for level, message in logs] == [(logging.WARNING, True)]
    # The missing file gets its own read warning, never a stale line (it has no age).
    assert not any("missing.status is stale" in message for _, message in logs)
    # A stale file that is then deleted stays stale: no second line.
    path.unlink()
    hub.refresh()
    assert len(freshness_logs(caplog)) == 1
    hub.close()


def test_staleness_off_never_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "udp.status"
    write_status(path, WRITTEN)
    hub = Hub(parse_config(f"ovpnudpstatus: {path}\nstale_after: 0\n"), clock=lambda: WRITTEN + 10**6.0)
    caplog.set_level(logging.INFO, logger="openvpn_exporter")
    assert hub.refresh().up
    assert freshness_logs(caplog) == []
    hub.close()
