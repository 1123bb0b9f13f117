"""Connection churn on /prom, from real status files rewritten as OpenVPN rewrites them: generated churn
(bench/gen.py) at scale, and the captured fixtures."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bench.gen import StatusFile, rewrite_in_place
from exporter import churn
from exporter.app import ExporterApp
from exporter.churn import DURATION_BUCKETS
from exporter.config import load_config, parse_config
from tests.support.common import CAPTURED

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/prom")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def starts_ends(samples: Samples, source: str) -> tuple[float, float]:
    return (
        value(samples, "ovpn_session_starts_total", source=source),
        value(samples, "ovpn_session_ends_total", source=source),
    )


def write(path: Path, data: bytes) -> None:
    """Rewrite in place as OpenVPN does; bump the mtime so that a same-size rewrite is seen too."""
    rewrite_in_place(str(path), data)
    later = time.time_ns() + 1_000_000
    os.utime(path, ns=(later, later))


@pytest.fixture
def status(tmp_path: Path) -> Path:
    return tmp_path / "udp.status"


def app_client(path: Path, extra: str = "") -> TestClient:
    return TestClient(ExporterApp(parse_config(f"ovpnudpstatus: {path}\nstale_after: 0\n{extra}")).asgi())


@pytest.fixture
def client(status: Path) -> Iterator[TestClient]:
    status.write_bytes(b"")
    with app_client(status) as c:
        yield c


def test_counters_start_at_zero_with_no_burst_from_the_first_snapshot(status: Path, client: TestClient) -> None:
    base = StatusFile(10_000)
    write(status, base.v3())
    samples = scrape(client)
    assert starts_ends(samples, "udp") == (0, 0)
    assert value(samples, "ovpn_session_duration_seconds_count", source="udp") == 0
    assert value(samples, "ovpn_session_duration_seconds_bucket", source="udp", le="604800.0") == 0
    # A rewrite that only moves byte counters is no churn either.
    write(status, base.v3(bump=3))
    assert starts_ends(scrape(client), "udp") == (0, 0)


def test_generated_churn_is_counted_exactly_with_durations(status: Path, client: TestClient) -> None:
    base = StatusFile(10_000)
    write(status, base.v3())
    scrape(client)
    now = int(time.time())
    after = base.churned(ended=137, started=152, now=now)
    write(status, after.v3(now=now))
    samples = scrape(client)
    assert starts_ends(samples, "udp") == (152, 137)
    # Durations: from each ended session's Connected Since to the TIME of the rewrite that no longer has it.
    kept = {row[6] for row in after.rows}
    lasted = [now - since_t for *_, since_t, cid in base.rows if cid not in kept]
    assert len(lasted) == 137
    assert value(samples, "ovpn_session_duration_seconds_count", source="udp") == 137
    assert value(samples, "ovpn_session_duration_seconds_sum", source="udp") == pytest.approx(sum(lasted))
    for bound in DURATION_BUCKETS:
        expected = sum(1 for d in lasted if d <= bound)
        assert value(samples, "ovpn_session_duration_seconds_bucket", source="udp", le=repr(bound)) == expected
    # Scraping again without a rewrite counts nothing twice.
    assert starts_ends(scrape(client), "udp") == (152, 137)


def test_status_version_1_identifies_sessions_by_name_address_and_start(status: Path, client: TestClient) -> None:
    base = StatusFile(2_000)
    write(status, base.v1())
    scrape(client)
    after = base.churned(ended=40, started=25)
    write(status, after.v1())
    samples = scrape(client)
    assert starts_ends(samples, "udp") == (25, 40)
    # v1 has no time_t column: the duration comes from the Connected Since text, in local time.
    assert value(samples, "ovpn_session_duration_seconds_count", source="udp") == 40
    assert value(samples, "ovpn_session_duration_seconds_bucket", source="udp", le="60.0") == 0


def test_torn_reads_and_a_downtime_never_count_twice(status: Path, client: TestClient) -> None:
    base = StatusFile(3_000)
    write(status, base.v3())
    scrape(client)
    first = base.churned(ended=10, started=20, seed=1)
    torn = first.v3()
    write(status, torn[: len(torn) // 2])  # caught half written: the last complete snapshot stays
    assert starts_ends(scrape(client), "udp") == (0, 0)
    write(status, first.v3())
    assert starts_ends(scrape(client), "udp") == (20, 10)
    write(status, torn[: len(torn) // 3])
    assert starts_ends(scrape(client), "udp") == (20, 10)
    # OpenVPN goes away: the file disappears, scrapes go on, nothing changes ...
    status.unlink()
    for _ in range(3):
        assert starts_ends(scrape(client), "udp") == (20, 10)
    # ... and when it is back, the new file is diffed against the last good one.
    second = first.churned(ended=5, started=7, seed=2)
    write(status, second.v3())
    assert starts_ends(scrape(client), "udp") == (27, 15)


def test_a_restart_that_reuses_client_ids_ends_and_starts_every_session(status: Path, client: TestClient) -> None:
    before = StatusFile(500, seed=3)
    write(status, before.v3(now=int(time.time()) - 120))
    scrape(client)
    # A restarted OpenVPN numbers its clients from 0 again; their start times differ.
    restarted = StatusFile(400, seed=4)
    write(status, restarted.v3())
    assert starts_ends(scrape(client), "udp") == (400, 500)


def test_the_captured_files_in_a_row(status: Path, client: TestClient) -> None:
    # Three clients (two sharing a CN), then all gone, then one mid-handshake, then nobody.
    write(status, (CAPTURED / "server-udp-status-v3.log").read_bytes())
    scrape(client)
    write(status, (CAPTURED / "server-status-v3-no-clients.log").read_bytes())
    samples = scrape(client)
    assert starts_ends(samples, "udp") == (0, 3)
    assert value(samples, "ovpn_session_duration_seconds_count", source="udp") == 3
    write(status, (CAPTURED / "server-status-v3-during-handshake.log").read_bytes())
    assert starts_ends(scrape(client), "udp") == (0, 3)  # a handshake is not a session yet
    write(status, (CAPTURED / "server-udp-status-v3.log").read_bytes())
    assert starts_ends(scrape(client), "udp") == (3, 3)


def test_handshake_rows_start_a_session_once_established(status: Path, client: TestClient) -> None:
    text = (CAPTURED / "server-udp-status-v3.log").read_text()
    lines = text.splitlines(keepends=True)
    names = [line.split("\t")[1] for line in lines if line.startswith("CLIENT_LIST")]
    first_cn = next(name for name in names if names.count(name) == 1)
    # A client still in its TLS handshake is listed as UNDEF with no virtual address and owns no route yet,
    # as in the capture server-status-v3-during-handshake.log.

    def undefined(line: str) -> str:
        fields = line.split("\t")
        if fields[0] == "CLIENT_LIST" and fields[1] == first_cn:
            fields[1], fields[3], fields[4] = "UNDEF", "", ""
        return "\t".join(fields)

    handshaking = "".join(
        undefined(line) for line in lines if not line.startswith("ROUTING_TABLE\t") or line.split("\t")[2] != first_cn
    )
    write(status, handshaking.encode())
    scrape(client)
    write(status, text.encode())
    assert starts_ends(scrape(client), "udp") == (1, 0)


def test_reconnects_per_client_are_opt_in_and_filtered(status: Path) -> None:
    base = StatusFile(1_000, duplicates=0)
    after = base.churned(ended=30, started=50, reconnects=12)
    reconnected = {row[0] for row in after.rows[-50:][:12]}
    write(status, base.v3())
    with app_client(status) as plain:
        scrape(plain)
        write(status, after.v3())
        assert not any(name == "ovpn_client_reconnects_total" for name, _ in scrape(plain))
    write(status, base.v3())
    excluded = sorted(reconnected)[0]
    with app_client(status, f"metrics: {{client_reconnects: true, exclude: ['{excluded}']}}\n") as opted:
        scrape(opted)
        write(status, after.v3())
        samples = scrape(opted)
    counts = {
        dict(labels)["client"]: v for (name, labels), v in samples.items() if name == "ovpn_client_reconnects_total"
    }
    assert counts == {f"{cn}_udp": 1 for cn in reconnected if cn != excluded}


def test_reconnect_tracking_is_bounded(status: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(churn, "MAX_TRACKED_CLIENTS", 100)
    base = StatusFile(300, duplicates=0)
    write(status, base.v3())
    with app_client(status, "metrics: {client_reconnects: true}\n") as opted:
        scrape(opted)
        # Hostile: thousands of new clients arrive and reconnect.
        current = base
        for seed in range(5):
            current = current.churned(ended=200, started=200, reconnects=200, seed=seed)
            write(status, current.v3())
            samples = scrape(opted)
    series = [labels for (name, labels) in samples if name == "ovpn_client_reconnects_total"]
    assert 0 < len(series) <= 100
    assert starts_ends(samples, "udp") == (1000, 1000)


def test_a_reload_keeps_the_counts_and_a_repointed_source_starts_a_new_baseline(tmp_path: Path) -> None:
    first, second = tmp_path / "a.status", tmp_path / "b.status"
    base = StatusFile(1_000, seed=5)
    write(first, base.v3())
    write(second, StatusFile(700, seed=6).v3())
    config = tmp_path / "exporter.yaml"
    config.write_text(f"ovpnudpstatus: {first}\nstale_after: 0\n")
    app = ExporterApp(load_config(config))
    with TestClient(app.asgi()) as client:
        scrape(client)
        write(first, base.churned(ended=3, started=4).v3())
        assert starts_ends(scrape(client), "udp") == (4, 3)
        assert app.reload_config()[0]
        assert starts_ends(scrape(client), "udp") == (4, 3)  # same source, same file: counts go on
        # The source now names another file: its sessions are a new baseline, not 700 starts and 1,001 ends.
        config.write_text(f"ovpnudpstatus: {second}\nstale_after: 0\n")
        assert app.reload_config()[0]
        assert starts_ends(scrape(client), "udp") == (4, 3)


def test_a_client_mode_status_file_has_no_churn_series(tmp_path: Path) -> None:
    path = tmp_path / "client.status"
    write(path, (CAPTURED / "client-status-udp-v1.log").read_bytes())
    with app_client(path) as client:
        samples = scrape(client)
    assert not any(name.startswith("ovpn_session_") for name, _ in samples)
