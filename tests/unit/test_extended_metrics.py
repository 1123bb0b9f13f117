"""Opt-in metric families: extended metrics, kumina/openvpn_exporter names, cardinality controls."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import ConfigError, MetricsConfig, parse_config
from exporter.hub import Hub
from exporter.parser import parse_status
from exporter.views.metrics import render_metrics
from tests.support.common import CAPTURED

UDP_V3 = CAPTURED / "server-udp-status-v3.log"  # duplicate-cn: client1 twice
TCP_V2 = CAPTURED / "server-tcp-userpass-status-v2.log"  # usernames alice, bob
UDP_V1 = CAPTURED / "server-udp-status-v1.log"
HANDSHAKE = CAPTURED / "server-status-v3-during-handshake.log"
CLIENT = CAPTURED / "client-status-udp-v1.log"
CONTRACT_FAMILIES = {"ovpn_bytes_in_total", "ovpn_bytes_out_total", "ovpn_info", "ovpn_sessions_total", "probe_success"}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def config_text(sources: list[tuple[str, Path, str]], metrics: str = "") -> str:
    lines = ["stale_after: 0", "sources:"]
    for name, path, protocol in sources:
        lines += [f"  - name: {name}", f"    path: {path}", f"    protocol: {protocol}"]
    if metrics:
        lines.append(f"metrics: {metrics}")
    return "\n".join(lines) + "\n"


def scrape(sources: list[tuple[str, Path, str]], metrics: str = "") -> str:
    config = parse_config(config_text(sources, metrics))
    return render_metrics(Hub(config).refresh(), config.metrics)


def samples(text: str) -> list[tuple[str, str, str]]:
    found = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, line
        found.append((match.group(1), match.group(2) or "", match.group(3)))
    return found


def families(text: str) -> dict[str, tuple[str, str]]:
    """name -> (type, help) from the HELP and TYPE lines."""
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    return {name: (kind, helps[name]) for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)}


def label_names(text: str, family: str) -> set[tuple[str, ...]]:
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    # prometheus_client strips _total from counter family names.
    fam = parsed.get(family) or parsed[family.removesuffix("_total")]
    return {tuple(sorted(s.labels)) for s in fam.samples}


def values(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    fam = parsed.get(family) or parsed[family.removesuffix("_total")]
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples if s.name == family}


ALL = [("udp", UDP_V3, "udp"), ("tcp", TCP_V2, "tcp"), ("client", CLIENT, "udp"), ("hs", HANDSHAKE, "udp")]
EVERYTHING = "{extended: true, kumina_compat: true}"


def test_default_output_is_the_contract_and_a_prefix_of_the_opt_in_output() -> None:
    default = scrape(ALL)
    assert set(families(default)) == CONTRACT_FAMILIES
    # Options off (spelled out) change nothing; options on only append families after the default ones.
    assert scrape(ALL, "{extended: false, kumina_compat: false}") == default
    for option in ("{extended: true}", "{kumina_compat: true}", EVERYTHING):
        richer = scrape(ALL, option)
        assert richer.startswith(default)
        assert set(families(richer)) > CONTRACT_FAMILIES


@pytest.mark.parametrize(
    "sources",
    [
        ALL,
        # Two configured sources reading one file: kumina's status_path label would repeat.
        [("a", UDP_V3, "udp"), ("b", UDP_V3, "udp")],
        [("a", UDP_V1, "udp"), ("b", UDP_V3, "tcp")],
    ],
    ids=["all", "same-file-twice", "v1-and-v3"],
)
@pytest.mark.parametrize(
    "labels", ["[client]", "[common_name]", "[username]", "[common_name, real_address]", "[source, client_id]"]
)
def test_never_two_samples_with_one_label_set(sources: list[tuple[str, Path, str]], labels: str) -> None:
    text = scrape(sources, f"{{extended: true, kumina_compat: true, session_labels: {labels}}}")
    keys = Counter((name, labelset) for name, labelset, _ in samples(text))
    assert [k for k, n in keys.items() if n > 1] == []
    # And the whole text is valid exposition format.
    assert list(text_string_to_metric_families(text))


def test_each_family_has_help_and_type_once() -> None:
    text = scrape(ALL, EVERYTHING)
    assert Counter(re.findall(r"^# TYPE (\S+)", text, re.M)).most_common(1)[0][1] == 1
    assert Counter(re.findall(r"^# HELP (\S+)", text, re.M)).most_common(1)[0][1] == 1


# kumina/openvpn_exporter, exporters/openvpn_exporter.go: name -> (type, HELP, label names).
KUMINA = {
    "openvpn_up": ("gauge", "Whether scraping OpenVPN's metrics was successful.", ("status_path",)),
    "openvpn_status_update_time_seconds": (
        "gauge", "UNIX timestamp at which the OpenVPN statistics were updated.", ("status_path",),
    ),
    "openvpn_server_connected_clients": ("gauge", "Number Of Connected Clients", ("status_path",)),
    "openvpn_openvpn_server_connected_clients": ("gauge", "Number Of Connected Clients", ("status_path",)),
    "openvpn_server_client_received_bytes_total": (
        "counter", "Amount of data received over a connection on the VPN server, in bytes.",
        ("common_name", "connection_time", "real_address", "status_path", "username", "virtual_address"),
    ),
    "openvpn_server_client_sent_bytes_total": (
        "counter", "Amount of data sent over a connection on the VPN server, in bytes.",
        ("common_name", "connection_time", "real_address", "status_path", "username", "virtual_address"),
    ),
    "openvpn_server_route_last_reference_time_seconds": (
        "gauge", "Time at which a route was last referenced, in seconds.",
        ("common_name", "real_address", "status_path", "virtual_address"),
    ),
    "openvpn_client_tun_tap_read_bytes_total": (
        "counter", "Total amount of TUN/TAP traffic read, in bytes.", ("status_path",),
    ),
    "openvpn_client_tcp_udp_write_bytes_total": (
        "counter", "Total amount of TCP/UDP traffic written, in bytes.", ("status_path",),
    ),
    "openvpn_client_auth_read_bytes_total": (
        "counter", "Total amount of authentication traffic read, in bytes.", ("status_path",),
    ),
}  # fmt: skip


def test_kumina_names_types_help_and_labels() -> None:
    text = scrape(ALL, "{kumina_compat: true}")
    declared = families(text)
    for name, (kind, help_text, labels) in KUMINA.items():
        assert declared[name] == (kind, help_text), name
        assert label_names(text, name) == {labels}, name


def test_kumina_values_come_from_the_status_files() -> None:
    text = scrape([("udp", UDP_V3, "udp"), ("tcp", TCP_V2, "tcp"), ("client", CLIENT, "udp")], "{kumina_compat: true}")
    udp = parse_status(UDP_V3.read_bytes(), "udp")
    assert values(text, "openvpn_server_connected_clients")[(("status_path", str(UDP_V3)),)] == len(udp.sessions)
    assert values(text, "openvpn_status_update_time_seconds")[(("status_path", str(UDP_V3)),)] == udp.updated_epoch
    received = values(text, "openvpn_server_client_received_bytes_total")
    for session in udp.sessions:
        key = (
            ("common_name", session.common_name), ("connection_time", str(session.connected_since_epoch)),
            ("real_address", session.real_address), ("status_path", str(UDP_V3)),
            ("username", session.username), ("virtual_address", session.virtual_address),
        )  # fmt: skip
        assert received[key] == session.bytes_received
    routes = values(text, "openvpn_server_route_last_reference_time_seconds")
    assert len([k for k in routes if ("status_path", str(UDP_V3)) in k]) == len(udp.routes)
    client_stats = dict(parse_status(CLIENT.read_bytes()).client_stats)
    assert values(text, "openvpn_client_tun_tap_read_bytes_total") == {
        (("status_path", str(CLIENT)),): client_stats["TUN/TAP read bytes"]
    }
    assert set(values(text, "openvpn_up").values()) == {1}


def test_kumina_same_file_twice_is_merged_not_duplicated() -> None:
    text = scrape([("a", UDP_V3, "udp"), ("b", UDP_V3, "udp")], "{kumina_compat: true}")
    single = scrape([("a", UDP_V3, "udp")], "{kumina_compat: true}")
    assert values(text, "openvpn_up") == values(single, "openvpn_up")
    doubled = values(text, "openvpn_server_client_received_bytes_total")
    once = values(single, "openvpn_server_client_received_bytes_total")
    assert doubled.keys() == once.keys()
    assert all(doubled[k] == 2 * once[k] for k in once)


def test_kumina_without_a_time_column_leaves_the_label_empty() -> None:
    text = scrape([("v1", UDP_V1, "udp")], "{kumina_compat: true}")
    assert {dict(k)["connection_time"] for k in values(text, "openvpn_server_client_received_bytes_total")} == {""}


def test_handshaking_rows_are_neither_counted_nor_labelled() -> None:
    text = scrape([("hs", HANDSHAKE, "udp")], EVERYTHING)
    assert values(text, "openvpn_server_connected_clients") == {(("status_path", str(HANDSHAKE)),): 0}
    assert values(text, "ovpn_source_sessions") == {(("source", "hs"),): 0}
    assert "UNDEF" not in text


def test_extended_per_source_families() -> None:
    text = scrape([("udp", UDP_V3, "udp"), ("tcp", TCP_V2, "tcp")], "{extended: true}")
    udp = parse_status(UDP_V3.read_bytes(), "udp")
    tcp = parse_status(TCP_V2.read_bytes(), "tcp")
    assert values(text, "ovpn_source_sessions") == {
        (("source", "tcp"),): len(tcp.sessions), (("source", "udp"),): len(udp.sessions),
    }  # fmt: skip
    assert values(text, "ovpn_source_up") == {(("source", "tcp"),): 1, (("source", "udp"),): 1}
    assert values(text, "ovpn_source_last_update_timestamp_seconds")[(("source", "udp"),)] == udp.updated_epoch
    assert values(text, "ovpn_max_bcast_mcast_queue_length") == {
        (("source", "tcp"),): int(tcp.global_stat("Max bcast/mcast queue length") or -1),
        (("source", "udp"),): int(udp.global_stat("Max bcast/mcast queue length") or -1),
    }
    assert values(text, "ovpn_dco_enabled") == {(("source", "tcp"),): 0, (("source", "udp"),): 0}
    # Route last reference, one per route.
    routes = values(text, "ovpn_route_last_reference_timestamp_seconds")
    assert len(routes) == len(udp.routes) + len(tcp.routes)
    for route in udp.routes:
        key = (("common_name", route.common_name), ("source", "udp"), ("virtual_address", route.virtual_address))
        assert routes[key] == route.last_ref_epoch


def test_a_down_source_reports_zero_sessions_and_up_zero(tmp_path: Path) -> None:
    text = scrape([("gone", tmp_path / "missing.status", "udp"), ("udp", UDP_V3, "udp")], "{extended: true}")
    assert values(text, "ovpn_source_up")[(("source", "gone"),)] == 0
    assert values(text, "ovpn_source_sessions")[(("source", "gone"),)] == 0


def test_session_labels_default_is_the_client_label_and_merges_duplicates() -> None:
    text = scrape([("udp", UDP_V3, "udp")], "{extended: true}")
    assert label_names(text, "ovpn_client_sessions") == {("client",)}
    udp = parse_status(UDP_V3.read_bytes(), "udp")
    client1 = [s for s in udp.sessions if s.common_name == "client1"]
    assert len(client1) == 2
    assert values(text, "ovpn_client_sessions")[(("client", "client1_udp"),)] == 2
    assert values(text, "ovpn_session_bytes_received_total")[(("client", "client1_udp"),)] == sum(
        s.bytes_received for s in client1
    )
    since = values(text, "ovpn_session_connected_since_timestamp_seconds")[(("client", "client1_udp"),)]
    assert since == min(s.connected_since_epoch or 0 for s in client1)


def test_session_labels_choose_the_label_set() -> None:
    text = scrape(
        [("tcp", TCP_V2, "tcp")], "{extended: true, session_labels: [common_name, username, virtual_address]}"
    )
    assert label_names(text, "ovpn_session_bytes_sent_total") == {("common_name", "username", "virtual_address")}
    tcp = parse_status(TCP_V2.read_bytes(), "tcp")
    assert values(text, "ovpn_session_bytes_sent_total") == {
        (("common_name", s.common_name), ("username", s.username), ("virtual_address", s.virtual_address)): (
            s.bytes_sent
        )
        for s in tcp.sessions
    }
    per_connection = scrape([("udp", UDP_V3, "udp")], "{extended: true, session_labels: [client_id]}")
    assert len(values(per_connection, "ovpn_client_sessions")) == 3


def test_per_client_false_drops_every_per_client_series() -> None:
    text = scrape(ALL, "{extended: true, kumina_compat: true, per_client: false}")
    declared = set(families(text))
    for gone in (
        "ovpn_bytes_in_total", "ovpn_client_sessions", "ovpn_session_bytes_sent_total",
        "ovpn_route_last_reference_timestamp_seconds", "openvpn_server_client_received_bytes_total",
        "openvpn_server_route_last_reference_time_seconds",
    ):  # fmt: skip
        assert gone not in declared
    for kept in ("ovpn_source_sessions", "openvpn_server_connected_clients", "openvpn_up", "ovpn_sessions_total"):
        assert kept in declared
    assert "common_name=" not in text
    assert "client=" not in text


def test_include_and_exclude_apply_to_every_per_client_family() -> None:
    text = scrape(ALL, '{extended: true, kumina_compat: true, include: ["client*"], exclude: ["client1"]}')
    names = set(re.findall(r'(?:common_name|client)="([^"_]+)', text))
    assert names == {"client2", "client3"}
    # Counts are not filtered: they say how many sessions there are.
    assert values(text, "ovpn_source_sessions")[(("source", "udp"),)] == 3


def test_no_label_changes_when_openvpn_rewrites_the_file(tmp_path: Path) -> None:
    """Bytes, TIME and Last Ref move on every rewrite; no label value may move with them."""
    status = tmp_path / "server.status"
    shutil.copy(UDP_V3, status)
    config = parse_config(config_text([("udp", status, "udp")], EVERYTHING))
    hub = Hub(config)
    before = samples(render_metrics(hub.refresh(), config.metrics))
    text = UDP_V3.read_text()
    text = re.sub(r"\t(\d{4,})\t(\d{4,})\t", lambda m: f"\t{int(m[1]) + 1000}\t{int(m[2]) + 2000}\t", text)
    text = text.replace("1795756450", "1795756460").replace("1795756449", "1795756459")
    status.write_text(text)
    after = samples(render_metrics(hub.refresh(), config.metrics))
    assert [(n, labels) for n, labels, _ in before] == [(n, labels) for n, labels, _ in after]
    assert [v for *_, v in before] != [v for *_, v in after]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ("{session_labels: [bytes]}", "'bytes' is not a session label"),
        ("{session_labels: [client, client]}", "'client' is listed twice"),
        ("{session_labels: []}", "must name at least one label"),
        ("{session_labels: client}", "expected a list of label names"),
        ("{session_label: [client]}", "did you mean session_labels?"),
        ("{extended: yes please}", "expected true or false"),
    ],
)
def test_session_labels_config_errors(metrics: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text([("udp", UDP_V3, "udp")], metrics), "exporter.yaml")
    text = str(caught.value)
    assert message in text
    assert text.startswith("exporter.yaml: metrics.")
    assert "\n" not in text


def test_session_labels_default() -> None:
    assert MetricsConfig().session_labels == ("client",)
    config = parse_config(config_text([("udp", UDP_V3, "udp")], "{session_labels: [username, source]}"))
    assert config.metrics.session_labels == ("username", "source")
