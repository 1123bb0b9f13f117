"""Connection churn against a real OpenVPN server: clients that disconnect and reconnect are counted on /prom,
once each, for every status-version."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .conftest import LabEnv
from .exporterproc import Exporter
from .lab import Client, Server
from .promtext import Scrape

pytestmark = pytest.mark.integration

SOURCE = "udp"
_SERVERS = itertools.count(1)


@dataclass
class ChurnLab:
    env: LabEnv
    server: Server
    exporter: Exporter

    def prom(self) -> Scrape:
        return self.exporter.metrics("/prom")

    def wait_for(self, starts: int, ends: int, what: str) -> Scrape:
        """Scrape /prom (each scrape diffs the newest snapshot) until the counters read `starts` and `ends`."""

        def reached(s: Scrape) -> bool:
            return (
                s.value("ovpn_session_starts_total", source=SOURCE) == starts
                and s.value("ovpn_session_ends_total", source=SOURCE) == ends
            )

        deadline = time.monotonic() + 30
        while not reached(scrape := self.prom()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last /prom:\n{scrape.text[-3000:]}")
            time.sleep(0.2)
        return scrape


@pytest.fixture
def churn_lab(lab_env: LabEnv, exporter_binary: str) -> Iterator[ChurnLab]:
    """A server of its own in the lab (the shared servers keep their clients for the other tests), with two
    clients already connected when the exporter starts, and reconnect counts switched on."""
    lab = lab_env.lab
    n = next(_SERVERS)  # each test its own server: names, ports and subnets never meet
    server = lab.start_server(f"churn{n}", "udp", 1196 + n, f"10.{10 + n}.0")
    clients = [lab.start_client("steady", server), lab.start_client("flappy", server)]
    lab.wait_status_settled()
    exporter = Exporter(
        exporter_binary,
        lab.root / "exporter-churn",
        {"ovpnudpstatus": str(server.status), "stale_after": 30, "metrics": {"client_reconnects": True}},
        name="churn",
    )
    try:
        yield ChurnLab(lab_env, server, exporter)
    finally:
        exporter.stop()
        for client in [*clients, *lab.connected(server)]:
            if client.name in lab.clients:
                lab.stop_client(client)
        lab.stop_server(server)


def reconnect(churn: ChurnLab, client: Client) -> Client:
    lab = churn.env.lab
    lab.stop_client(client)
    return lab.start_client(client.common_name, churn.server)


def test_disconnects_and_reconnects_are_counted_once(churn_lab: ChurnLab) -> None:
    lab = churn_lab.env.lab
    started = time.time()
    # The sessions already there are the baseline: no burst at start-up.
    first = churn_lab.prom()
    assert first.value("ovpn_session_starts_total", source=SOURCE) == 0
    assert first.value("ovpn_session_ends_total", source=SOURCE) == 0
    assert first.value("ovpn_session_duration_seconds_count", source=SOURCE) == 0
    flappy = next(c for c in lab.connected(churn_lab.server) if c.common_name == "flappy")
    # Disconnect: one end, observed in the duration histogram.
    lab.stop_client(flappy)
    churn_lab.wait_for(0, 1, "the disconnect to be counted")
    # Back again, twice over: each is one start and, but for the last, one end.
    flappy = lab.start_client("flappy", churn_lab.server)
    churn_lab.wait_for(1, 1, "the reconnect to be counted")
    flappy = reconnect(churn_lab, flappy)
    scrape = churn_lab.wait_for(2, 2, "the second reconnect to be counted")
    # Scrapes that see no change count nothing more, however many there are.
    for _ in range(5):
        again = churn_lab.prom()
        assert again.value("ovpn_session_starts_total", source=SOURCE) == 2
        assert again.value("ovpn_session_ends_total", source=SOURCE) == 2
    # Two sessions ended, each lasting less than the test has run.
    assert scrape.value("ovpn_session_duration_seconds_count", source=SOURCE) == 2
    assert 0 <= scrape.value("ovpn_session_duration_seconds_sum", source=SOURCE) <= 2 * (time.time() - started + 5)
    assert scrape.value("ovpn_session_duration_seconds_bucket", source=SOURCE, le="+Inf") == 2
    # Per client: flappy came back twice, steady never left.
    reconnects = scrape.by_client("ovpn_client_reconnects_total")
    assert reconnects == {"flappy_udp": 2}
    assert scrape.duplicates() == []


def test_a_stopped_server_counts_nothing_while_stale(churn_lab: ChurnLab) -> None:
    churn_lab.prom()  # the baseline
    churn_lab.env.lab.stop_server(churn_lab.server)
    # OpenVPN left its file behind with both sessions: scrapes go on, nothing starts or ends.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        scrape = churn_lab.prom()
        assert scrape.value("ovpn_session_starts_total", source=SOURCE) == 0
        assert scrape.value("ovpn_session_ends_total", source=SOURCE) == 0
        time.sleep(0.5)
