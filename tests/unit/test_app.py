"""The routes, on the real application in-process, fed by real status files."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from exporter.app import ExporterApp
from exporter.config import parse_config
from tests.support.common import CAPTURED, RECONSTRUCTED

# SPEC 2.2, with the byte counts of reconstructed/v3_2.6.15_tcp_single.status.
SPEC_METRICS = """\
# HELP ovpn_bytes_in_total Total number of bytes received
# TYPE ovpn_bytes_in_total counter
ovpn_bytes_in_total{client="bookworm.openvpn.com_tcp"} 3557
# HELP ovpn_bytes_out_total Total number of bytes sent
# TYPE ovpn_bytes_out_total counter
ovpn_bytes_out_total{client="bookworm.openvpn.com_tcp"} 3868
# HELP ovpn_info Software info
# TYPE ovpn_info counter
ovpn_info{product="OpenVPN",version="2.6.15"} 1
# HELP ovpn_sessions_total Total number of active sessions
# TYPE ovpn_sessions_total gauge
ovpn_sessions_total 1
# HELP probe_success OpenVPN Status
# TYPE probe_success gauge
probe_success{version="2.6.15"} 1
"""

# SPEC 2.3.
SPEC_SESSIONS = (
    '[{"server":"openvpn-server","protocol":"tcp","p1uniqueid":"0","p2uniqueid":"0","state":"ESTABLISHED",'
    '"remotehost":"78.99.236.15","remoteport":"53993","remoteid":"bookworm.openvpn.com","remotets":"10.0.0.2",'
    '"established":"2025-11-03 20:40:03","bytesin":"3557","bytesout":"3868","packetsin":"0","packetsout":"0"}]'
)


def client_for(config_text: str) -> TestClient:
    return TestClient(ExporterApp(parse_config(config_text)).asgi())


@pytest.fixture
def spec_client() -> Iterator[TestClient]:
    # The reconstructed file was written in 2025: staleness off, so it counts as up.
    with client_for(f"ovpntcpstatus: {RECONSTRUCTED / 'v3_2.6.15_tcp_single.status'}\nstale_after: 0\n") as client:
        yield client


def test_metrics_equal_the_contract_sample_line_for_line(spec_client: TestClient) -> None:
    response = spec_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.text.splitlines() == SPEC_METRICS.splitlines()
    assert response.text == SPEC_METRICS


def test_sessions_local_equals_the_contract_sample(spec_client: TestClient) -> None:
    for path in ("/sessions_local", "/sessions"):
        response = spec_client.get(path)
        assert response.status_code == 200
        assert response.text == SPEC_SESSIONS
        assert response.headers["cache-control"] == "no-store"
        assert list(response.json()[0]) == list(json.loads(SPEC_SESSIONS)[0])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_older_status_versions_give_the_same_metrics(version: str) -> None:
    path = RECONSTRUCTED / f"{version}_2.6.15_tcp_single.status"
    with client_for(f"ovpntcpstatus: {path}\nstale_after: 0\n") as client:
        text = client.get("/metrics").text
        sessions = client.get("/sessions").json()
    expected = SPEC_METRICS if version == "v2" else SPEC_METRICS.replace('version="2.6.15"', 'version="unknown"')
    assert text == expected
    got = sessions[0]
    want = json.loads(SPEC_SESSIONS)[0]
    if version == "v1":  # v1 carries no peer or client id
        want |= {"p1uniqueid": "", "p2uniqueid": ""}
    assert got == want


def test_duplicate_cns_are_summed_into_one_series(tmp_path: Path) -> None:
    config = f"ovpnudpstatus: {CAPTURED / 'server-udp-status-v3.log'}\nstale_after: 0\n"
    with client_for(config) as client:
        lines = client.get("/metrics").text.splitlines()
    assert 'ovpn_bytes_in_total{client="client1_udp"} 14890' in lines  # 7444 + 7446
    assert 'ovpn_bytes_out_total{client="client2_udp"} 6331' in lines
    assert "ovpn_sessions_total 3" in lines
    samples = [line.rsplit(" ", 1)[0] for line in lines if not line.startswith("#")]
    assert len(samples) == len(set(samples))


def test_handshake_rows_are_not_sessions_yet() -> None:
    config = f"ovpnudpstatus: {CAPTURED / 'server-status-v3-during-handshake.log'}\nstale_after: 0\n"
    with client_for(config) as client:
        lines = client.get("/metrics").text.splitlines()
        rows = client.get("/sessions").json()
    assert "ovpn_sessions_total 0" in lines
    assert not any("UNDEF" in line for line in lines)
    assert [(r["remoteid"], r["state"]) for r in rows] == [("UNDEF", "CONNECTING")]


def test_idle_server_is_up_with_zero_sessions() -> None:
    config = f"ovpnudpstatus: {CAPTURED / 'server-status-v3-no-clients.log'}\nstale_after: 0\n"
    with client_for(config) as client:
        text = client.get("/metrics").text
        assert client.get("/sessions").text == "[]"
    assert "ovpn_sessions_total 0\n" in text
    assert 'probe_success{version="2.6.14"} 1\n' in text
    assert "ovpn_bytes_in_total" not in text


def test_a_missing_file_does_not_stop_the_others(tmp_path: Path) -> None:
    config = (
        f"ovpntcpstatus: {tmp_path / 'missing.status'}\n"
        f"ovpnudpstatus: {CAPTURED / 'server-udp-status-v3.log'}\nstale_after: 0\n"
    )
    with client_for(config) as client:
        text = client.get("/metrics").text
        prom = client.get("/prom").text
    assert "ovpn_sessions_total 3" in text
    assert 'probe_success{version="2.6.14"} 1' in text
    assert 'openvpn_exporter_source_up{source="tcp"} 0.0' in prom
    assert 'openvpn_exporter_read_errors_total{reason="missing",source="tcp"}' in prom


def test_stale_file_is_down(tmp_path: Path) -> None:
    path = tmp_path / "udp.status"
    shutil.copy(CAPTURED / "server-udp-status-v3.log", path)  # TIME says 2026-11-27 05:14:10
    with client_for(f"ovpnudpstatus: {path}\nstale_after: 60\n") as client:
        text = client.get("/metrics").text
    assert 'probe_success{version="2.6.14"} 0' in text
    assert "ovpn_sessions_total 0" in text


def test_nothing_readable_is_down_with_unknown_version(tmp_path: Path) -> None:
    with client_for(f"ovpnudpstatus: {tmp_path / 'nope'}\n") as client:
        text = client.get("/metrics").text
    assert text.endswith('probe_success{version="unknown"} 0\n')
    assert "ovpn_sessions_total 0\n" in text


def test_prom_has_runtime_exporter_and_openvpn_metrics(spec_client: TestClient) -> None:
    spec_client.get("/metrics")
    text = spec_client.get("/prom").text
    for name in (
        "process_resident_memory_bytes",
        "python_gc_objects_collected_total",
        "python_info",
        "openvpn_exporter_build_info",
        "openvpn_exporter_scrape_duration_seconds_bucket",
        "openvpn_exporter_source_last_update_timestamp_seconds",
        "ovpn_sessions_total 1",
        'probe_success{version="2.6.15"} 1',
    ):
        assert name in text, name
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(families) == len(set(families))


def write_many(path: Path) -> None:
    """A status file of 200 clients: bodies big enough to be gzipped."""
    text = (RECONSTRUCTED / "v3_2.6.15_tcp_single.status").read_text()
    head, tail = text.split("HEADER\tROUTING_TABLE")
    rows = "".join(
        f"CLIENT_LIST\tc{i}\t10.1.0.{i % 250}:{1000 + i}\t10.0.1.{i % 250}\t\t{i}\t{i}\t2025-11-03 20:40:03"
        f"\t1762202403\tUNDEF\t{i + 10}\t{i + 10}\tAES-256-GCM\n"
        for i in range(200)
    )
    # Each client owns its route, as in every status OpenVPN writes (a file without them reads as torn).
    routes = "".join(
        f"ROUTING_TABLE\t10.0.1.{i % 250}\tc{i}\t10.1.0.{i % 250}:{1000 + i}\t2025-11-03 20:40:03\t1762202403\n"
        for i in range(200)
    )
    table_head, table_rest = tail.split("\n", 1)
    path.write_text(head + rows + "HEADER\tROUTING_TABLE" + table_head + "\n" + routes + table_rest)


def test_gzip_when_the_scraper_accepts_it(tmp_path: Path) -> None:
    path = tmp_path / "many.status"
    write_many(path)
    with client_for(f"ovpntcpstatus: {path}\nstale_after: 0\n") as client:
        plain = client.get("/metrics", headers={"Accept-Encoding": "identity"})
        zipped = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.text == plain.text  # the test client decodes gzip
    assert "ovpn_sessions_total 201" in plain.text


def test_unknown_paths_are_404(spec_client: TestClient) -> None:
    for path in ("/nope", "/metrics/", "/static/x", "/index.html", "/../etc/passwd"):
        response = spec_client.get(path)
        assert response.status_code == 404, path
        assert response.headers["x-content-type-options"] == "nosniff"


def test_health_and_readiness(spec_client: TestClient) -> None:
    assert spec_client.get("/-/healthy").text == "OK"
    assert spec_client.get("/-/ready").text == "OK"


def test_landing_page_links_every_endpoint(spec_client: TestClient) -> None:
    response = spec_client.get("/")
    assert response.status_code == 200
    for href in ('href="/metrics"', 'href="/prom"', 'href="/static"', 'href="/sessions_local"'):
        assert href in response.text
    assert "script" not in response.text.lower()
    assert "http://" not in response.text and "https://" not in response.text  # no external assets
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert spec_client.get("/assets/style.css").headers["content-type"].startswith("text/css")


def test_custom_telemetry_path_moves_metrics() -> None:
    app = ExporterApp(parse_config(f"ovpntcpstatus: {RECONSTRUCTED / 'v3_2.6.15_tcp_single.status'}\n"), "/x/m")
    with TestClient(app.asgi()) as client:
        assert client.get("/x/m").status_code == 200
        assert client.get("/metrics").status_code == 404
        assert 'href="/x/m"' in client.get("/").text


def test_sessions_page_shows_clients_and_escapes_hostile_names(tmp_path: Path) -> None:
    hostile = '<img src=x onerror=alert(1)>"&'
    text = (CAPTURED / "server-tcp-userpass-status-v3.log").read_text().replace("client3", hostile)
    path = tmp_path / "tcp.status"
    path.write_text(text)
    with client_for(f"ovpntcpstatus: {path}\nstale_after: 0\n") as client:
        page = client.get("/static")
        metrics = client.get("/metrics").text
        rows = client.get("/sessions").json()
    assert page.status_code == 200
    assert "<img" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;&quot;&amp;" in page.text
    assert "client2" in page.text and "127.0.0.1" in page.text and "10.82.0.2" in page.text
    assert "Showing 2 active connection(s)" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none' forbids scripts
    assert 'client="<img src=x onerror=alert(1)>\\"&_tcp"' in metrics
    assert {r["remoteid"] for r in rows} == {hostile, "client2"}


def test_gzip_body_is_really_gzip(tmp_path: Path) -> None:
    app = ExporterApp(parse_config(f"ovpnudpstatus: {CAPTURED / 'server-udp-status-v3.log'}\nstale_after: 0\n"))
    cache = app._caches["metrics"]
    state = app.hub.refresh()
    body, zipped = cache.get(state, want_gzip=True)
    plain, _ = cache.get(state, want_gzip=False)
    assert zipped is False or gzip.decompress(body) == plain


def test_a_gzip_scrape_keeps_only_the_gzip_body(tmp_path: Path) -> None:
    """Prometheus asks for gzip: the identity rendering is not kept beside it, and an identity client of
    the same state still gets the same bytes."""
    write_many(tmp_path / "many.status")
    app = ExporterApp(parse_config(f"ovpntcpstatus: {tmp_path / 'many.status'}\nstale_after: 0\n"))
    cache = app._caches["sessions"]
    state = app.hub.refresh()
    plain, zipped = cache.get(state, want_gzip=False)
    assert zipped is False and len(plain) >= 1024  # big enough to be gzipped
    body, zipped = cache.get(state, want_gzip=True)
    assert zipped is True and gzip.decompress(body) == plain
    assert cache._entry is not None and cache._entry.body is None
    again, zipped = cache.get(state, want_gzip=False)
    assert again == plain and zipped is False
    # Inflated once, then shared by every identity response: a reader that never reads pins no copy.
    assert cache.get(state, want_gzip=False)[0] is again
    assert cache.get(state, want_gzip=True) == (body, True)


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, identity", False),
        ("deflate, gzip;q=0.5", True),
        ("*", True),
        ("*;q=0", False),
        ("*, gzip;q=0", False),
        ("identity", False),
        ("gzip;q=nan", False),
        ("gzip;q=bogus", False),
        ("", False),
    ],
)
def test_accept_encoding_q_values(header: str, gzip_ok: bool) -> None:
    from exporter.serving import accepts_gzip

    assert accepts_gzip(header) is gzip_ok


def test_gzip_refused_by_q_zero_is_not_sent(tmp_path: Path) -> None:
    with client_for(f"ovpnudpstatus: {CAPTURED / 'server-udp-status-v3.log'}\nstale_after: 0\n") as client:
        response = client.get("/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers


def test_a_source_that_raises_is_down_and_the_others_still_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An error no source expects (a bug, or an OverflowError from a C call): the config checks now refuse
    # the port typo that once raised one, so the fault is injected where the management source connects.
    from exporter.sources.management import ManagementSource

    def overflow(self: object, deadline: float) -> object:
        raise OverflowError("connect(): port must be 0-65535.")

    monkeypatch.setattr(ManagementSource, "_connect", overflow)
    config = (
        f"sources:\n  - name: udp\n    path: {CAPTURED / 'server-udp-status-v3.log'}\n"
        "  - name: typo\n    management: 127.0.0.1:7505\nstale_after: 0\n"
    )
    with client_for(config) as client:
        for path in ("/metrics", "/sessions", "/static", "/prom"):
            assert client.get(path).status_code == 200, path
        prom = client.get("/prom").text
        assert client.get("/-/ready").status_code == 200
    assert 'openvpn_exporter_source_up{source="typo"} 0.0' in prom
    assert 'openvpn_exporter_source_up{source="udp"} 1.0' in prom
    assert 'openvpn_exporter_read_errors_total{reason="internal",source="typo"}' in prom


def test_readiness_says_when_nothing_can_be_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = ExporterApp(parse_config(f"ovpnudpstatus: {CAPTURED / 'server-udp-status-v3.log'}\nstale_after: 0\n"))

    def broken(state: object) -> bytes:
        raise RuntimeError("renderer bug")

    with TestClient(app.asgi(), raise_server_exceptions=False) as client:
        assert client.get("/-/ready").status_code == 200
        monkeypatch.setattr(app._caches["metrics"], "render", broken)
        assert client.get("/metrics").status_code == 500
        ready = client.get("/-/ready")
        assert ready.status_code == 503 and "cannot render metrics" in ready.text
        monkeypatch.undo()
        assert client.get("/metrics").status_code == 200
        assert client.get("/-/ready").status_code == 200
