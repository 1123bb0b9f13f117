"""The fast parser against the reference parser: for every input, the same snapshot, or the fast one declined.

Inputs: every fixture, the benchmark's generated files (status-version 1, 2 and 3, rewritten with growing
counters and a changing set of clients, parsed with the previous snapshot as the exporter does), torn
variants of them, and hypothesis-made status texts with the awkward values OpenVPN really prints.
"""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.model import Snapshot
from exporter.parser import StatusParseError, normalise_line_ends, parse_reference
from exporter.parser.common import frame
from exporter.parser.fast import parse_fast
from tests.support.common import CAPTURED, FIXTURES

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from gen import StatusFile

Outcome = Snapshot | tuple[str, ...]


def reference(text: str, protocol: str) -> Outcome:
    try:
        return parse_reference(text, protocol)
    except StatusParseError as exc:
        return (type(exc).__name__, exc.reason, exc.message)
    except ValueError as exc:  # int() of a digit it does not take: parse_status reports it as malformed
        return ("ValueError", str(exc))


def fast(text: str, protocol: str, previous: Snapshot | None = None) -> Snapshot | None:
    try:
        form, last = frame(text)
    except StatusParseError:
        return None  # the frame checks are shared: both parsers give the same answer, the reference's
    return parse_fast(text, form, last, protocol, previous.session_table if previous else None)


def agree(data: str | bytes, protocol: str = "udp", previous: Snapshot | None = None) -> Snapshot | None:
    """Assert that the fast parser's result, if any, is the reference's; return it."""
    text = normalise_line_ends(data.decode("utf-8", "replace") if isinstance(data, bytes) else data)
    got = fast(text, protocol, previous)
    if got is None:
        return None
    expected = reference(text, protocol)
    assert isinstance(expected, Snapshot), f"the fast parser accepted what the reference rejects: {expected}"
    assert got == expected
    assert repr(got) == repr(expected)  # every field of every row, the lazily built columns included
    for name in ("bytes_received", "bytes_sent"):  # the text the views print
        assert list(got.session_table.counter_text(name)) == list(map(str, getattr(expected.session_table, name)))
    return got


STATUS_FILES = sorted(p for p in FIXTURES.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", STATUS_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("protocol", ["", "udp", "tcp"])
def test_every_fixture(path: Path, protocol: str) -> None:
    data = path.read_bytes()
    agree(data, protocol)
    agree(data.replace(b"\n", b"\r\n"), protocol)


def generated() -> list[tuple[str, list[bytes]]]:
    """(label, successive rewrites) of generated files: the counters grow, then a client leaves."""
    status = StatusFile(300, seed=3, duplicates=0.2)
    files = []
    for version, render in (("v3", status.v3), ("v1", status.v1)):
        texts = [render(bump, now=1795756450 + bump) for bump in range(3)]
        files.append((version, texts))
        lines = texts[-1].split(b"\n")
        files.append((f"{version}-leaves", [*texts, b"\n".join(lines[:5] + lines[6:])]))
    v2 = [text.replace(b"\t", b",") for text in files[0][1]]
    files.append(("v2", v2))
    return files


@pytest.mark.parametrize(("label", "texts"), generated(), ids=[label for label, _ in generated()])
@pytest.mark.parametrize("protocol", ["", "tcp"])
def test_generated_files_with_churn(label: str, texts: list[bytes], protocol: str) -> None:
    previous = None
    for text in texts:
        snapshot = agree(text, protocol, previous)
        assert snapshot is not None, "the fast parser declined a generated file"
        assert agree(text, protocol) == snapshot  # with and without the previous snapshot alike
        previous = snapshot


def torn_variants() -> list[tuple[str, bytes]]:
    status = StatusFile(120, seed=5, duplicates=0.1)
    rng = random.Random(2)
    cases = []
    for version, render in (("v3", status.v3), ("v1", status.v1)):
        old, new = render(0, now=1795756450), render(9, now=1795756460)
        for i in range(25):
            cut = rng.randrange(1, len(old))
            line_start = old.rfind(b"\n", 0, cut) + 1
            cases += [
                (f"{version}-cut-{i}", old[:cut]),
                (f"{version}-mixed-{i}", new[:cut] + old[cut:]),
                (f"{version}-junk-{i}", old + old[cut:]),
                (f"{version}-dropline-{i}", old[:line_start] + old[old.find(b"\n", cut) + 1 :]),
                (f"{version}-dupline-{i}", old[:line_start] + old[line_start:]),
            ]
    return cases


@pytest.mark.parametrize(("label", "data"), torn_variants(), ids=[label for label, _ in torn_variants()])
def test_torn_variants(label: str, data: bytes) -> None:
    agree(data, "udp")
    agree(data.replace(b"\t", b","), "udp")


V1 = (CAPTURED / "server-udp-status-v1.log").read_text()
V3 = (CAPTURED / "server-udp-status-v3.log").read_text()


def v1_edges() -> dict[str, str]:
    stats = V1.index("GLOBAL STATS")
    routing = V1.index("ROUTING TABLE")
    route_rows = V1.index("\n", routing + len("ROUTING TABLE\n")) + 1
    first_row = V1.index("\n", V1.index("Common Name")) + 1
    return {
        "no stats": V1[:stats] + "END\n",
        "stats without lines": V1[:stats] + "GLOBAL STATS\nEND\n",
        "a blank stat line": V1[:stats] + "GLOBAL STATS\n\nEND\n",
        "no routing header": V1[:routing] + "ROUTING TABLE\n" + V1[stats:],
        "no route rows": V1[:route_rows] + V1[stats:],
        "routing table last": V1[:routing] + "ROUTING TABLE\nEND\n",
        "no clients": V1[:first_row] + V1[routing:],
        "stats before routes": V1[:routing] + "GLOBAL STATS\n" + V1[routing:stats] + "END\n",
        "no routing table": V1[:routing] + V1[stats:],
        "comma in a common name": V1.replace("client2,", "client,2,"),
        "torn client row": V1.replace("client1,127.0.0.1:39394,", "39394,", 1),
        "torn route row": V1.replace("10.81.0.4,client2,", "0.4,client2,", 1),
        "route row with a comma": V1.replace("10.81.0.4,client2,", "10.81.0.4,client,2,", 1),
        # One row a field short, another a field long: the comma total is right, the rows are not.
        "short and long route rows": V1.replace("10.81.0.3,client1,", "client1,", 1).replace(
            "10.81.0.4,client2,", "10.81.0.4,client2,x,", 1
        ),
        "no END": V1[: V1.rindex("END")],
        "junk after END": V1 + "client1,127.0.0.1:1,1,1,2026-11-27 05:13:48\n",
    }


def v3_edges() -> dict[str, str]:
    return {
        "no route rows": "\n".join(line for line in V3.split("\n") if not line.startswith("ROUTING_TABLE\t")),
        "torn client row": V3.replace("CLIENT_LIST\tclient2\t", "ent2\t", 1),
        "two client rows on one line": V3.replace("\nCLIENT_LIST\tclient2\t", "\tCLIENT_LIST\tclient2\t", 1),
        "a common name that is the row type": V3.replace("CLIENT_LIST\tclient2\t", "CLIENT_LIST\tCLIENT_LIST\t", 1),
        "torn route row": V3.replace("ROUTING_TABLE\t10.81.0.3\t", "TABLE\t10.81.0.3\t", 1),
        "short and long route rows": V3.replace("ROUTING_TABLE\t10.81.0.3\t", "ROUTING_TABLE\t", 1).replace(
            "ROUTING_TABLE\t10.81.0.4\t", "ROUTING_TABLE\t10.81.0.4\tx\t", 1
        ),
        "client row after the routes": V3.replace(
            "GLOBAL_STATS",
            V3[V3.index("CLIENT_LIST\t") : V3.index("\n", V3.index("CLIENT_LIST\t")) + 1] + "GLOBAL_STATS",
            1,
        ),
    }


EDGES = {**{f"v1 {k}": v for k, v in v1_edges().items()}, **{f"v3 {k}": v for k, v in v3_edges().items()}}


@pytest.mark.parametrize("label", sorted(EDGES))
def test_section_edges(label: str) -> None:
    """Sections at their edges and rows torn in the ways that keep a file's shape."""
    agree(EDGES[label], "udp")
    agree(EDGES[label].replace("\t", ","), "udp")


# Hypothesis-made status texts.

NAMES = st.one_of(
    st.sampled_from(["alice", "UNDEF", "bob,smith", 'quo"te', "tab\tname", "café", "日本語", "a b", "CLIENT_LIST"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\n\r\x00"), max_size=8),
)
ADDRESSES = st.sampled_from(
    [
        "198.51.100.7:50001", "198.51.100.8:50002", "[2001:db8::1]:1194", "2001:db8::1", "10.0.0.1",
        "udp4:203.0.113.5:52137", "tcp4-server:192.0.2.10:47054", "udp6:[2001:db8::10]:51000",
        "tcp6-server:[2001:db8::2]:443", "udp:192.0.2.1:1", "udpish:1", "a b:1", "",
    ]
) | st.builds("192.0.2.{}:{}".format, st.integers(1, 254), st.integers(1, 65535))  # fmt: skip
# Each address form OpenVPN prints, made unique by the row's number.
UNIQUE_ADDRESSES = st.sampled_from(
    [
        "198.51.100.{}:50001", "[2001:db8::{}]:1194", "2001:db8::{}", "udp4:203.0.113.{}:52137",
        "tcp4-server:192.0.2.{}:47054", "udp6:[2001:db8::{}]:51000", "tcp6-server:[2001:db8::{}]:443",
    ]
)  # fmt: skip
# Counters as OpenVPN prints them, and with leading zeros (digits all the same, but not what str() prints).
COUNTS = st.integers(0, 10**12).map(str) | st.integers(0, 999).map("{:05d}".format)
ODD_COUNTS = st.sampled_from(["0", "007", "00", "\u0664\u0662", "\u00b2", "", "1x", " 1"])
TIMES = st.sampled_from(["2026-11-27 05:14:06", "Fri Nov 27 07:00:00 2026", "Mon Nov  3 20:40:03 2025"])
ODD_TIMES = st.sampled_from(["", "x", "Fri Nov 27 07:00:00", "Fri Nov \u0662\u0662 07:00:00 2026", "2026-11-27"])
TIME_T = st.sampled_from(["1795756446", "0017"]) | st.integers(0, 2**31).map(str)
ODD_TIME_T = st.sampled_from(["", "x", "\u0662", "-1"])

# Client headers by OpenVPN version: 2.5+ (twelve columns), 2.4 (no cipher), 2.3 (eight), status-version 1.
LAYOUTS = {
    "2.5": ["cn", "real", "v4", "v6", "rx", "tx", "since", "since_t", "user", "cid", "pid", "cipher"],
    "2.4": ["cn", "real", "v4", "v6", "rx", "tx", "since", "since_t", "user", "cid", "pid"],
    "2.3": ["cn", "real", "v4", "rx", "tx", "since", "since_t", "user"],
    "v1": ["cn", "real", "rx", "tx", "since"],
}
TITLES = {
    "cn": "Common Name", "real": "Real Address", "v4": "Virtual Address", "v6": "Virtual IPv6 Address",
    "rx": "Bytes Received", "tx": "Bytes Sent", "since": "Connected Since", "since_t": "Connected Since (time_t)",
    "user": "Username", "cid": "Client ID", "pid": "Peer ID", "cipher": "Data Channel Cipher",
}  # fmt: skip


@st.composite
def client(draw: st.DrawFn, index: int, hostile: bool) -> dict[str, str]:
    """One client's values; a `hostile` one may hold what the parsers must reject or repair."""
    if hostile:
        cid = str(index) if draw(st.integers(0, 4)) else "0"  # now and then two rows share a Client ID
        real = draw(ADDRESSES)
        counts, times, time_t = COUNTS | ODD_COUNTS, TIMES | ODD_TIMES, TIME_T | ODD_TIME_T
    else:
        cid, real = str(index), draw(UNIQUE_ADDRESSES).format(index + 2)
        counts, times, time_t = COUNTS, TIMES, TIME_T
    return {
        "cn": draw(NAMES), "real": real, "v4": f"10.8.0.{index + 2}",
        "v6": draw(st.sampled_from(["", f"fd00::{index:x}"])), "rx": draw(counts), "tx": draw(counts),
        "since": draw(times), "since_t": draw(time_t), "user": draw(NAMES | st.just("UNDEF")), "cid": cid,
        "pid": cid, "cipher": draw(st.sampled_from(["AES-256-GCM", "CHACHA20-POLY1305", "BF-CBC"])),
    }  # fmt: skip


def routes(clients: list[dict[str, str]], v1: bool, last_t: list[str]) -> list[list[str]]:
    rows = []
    for i, c in enumerate(clients):
        for address in (c["v4"], c["v6"], "10.1.0.0/24" if i % 3 == 0 else ""):
            if address:
                rows.append([address, c["cn"], c["real"], c["since"], *([] if v1 else [last_t[i % len(last_t)]])])
    return rows


def render(version: int, layout: str, clients: list[dict[str, str]], last_t: list[str]) -> str:
    columns = LAYOUTS["v1" if version == 1 else layout]
    header = [TITLES[c] for c in columns]
    rows = [[c[k] for k in columns] for c in clients]
    route_header = ["Virtual Address", "Common Name", "Real Address", "Last Ref"]
    route_rows = routes(clients, version == 1, last_t)
    if version == 1:
        lines = ["OpenVPN CLIENT LIST", "Updated,2026-11-27 05:14:10", ",".join(header)]
        lines += [",".join(r) for r in rows] + ["ROUTING TABLE", ",".join(route_header)]
        lines += [",".join(r) for r in route_rows] + ["GLOBAL STATS", "Max bcast/mcast queue length,0"]
        return "\n".join([*lines, "END", ""])
    sep = "\t" if version == 3 else ","
    lines = ["TITLE" + sep + "OpenVPN 2.6.14 x86_64", f"TIME{sep}2026-11-27 05:14:10{sep}1795756450"]
    lines.append(sep.join(["HEADER", "CLIENT_LIST", *header]))
    lines += [sep.join(["CLIENT_LIST", *r]) for r in rows]
    lines.append(sep.join(["HEADER", "ROUTING_TABLE", *route_header, "Last Ref (time_t)"]))
    lines += [sep.join(["ROUTING_TABLE", *r]) for r in route_rows]
    lines += [f"GLOBAL_STATS{sep}Max bcast/mcast queue length{sep}0", f"GLOBAL_STATS{sep}dco_enabled{sep}0"]
    return "\n".join([*lines, "END", ""])


@st.composite
def status_texts(draw: st.DrawFn) -> tuple[str, str]:
    """(a status text, the same text with other counters): a rewrite to parse with the previous snapshot."""
    count = draw(st.integers(1, 6))
    hostile = draw(st.integers(0, 3)) == 0
    clients = [draw(client(i, hostile)) for i in range(count)]
    if count > 1 and draw(st.booleans()):
        clients[-1]["cn"] = clients[0]["cn"]  # duplicate-cn
    version, layout = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from(sorted(LAYOUTS)[:3]))
    last_t = draw(st.lists(TIME_T | ODD_TIME_T if hostile else TIME_T, min_size=1, max_size=3))
    text = render(version, layout, clients, last_t)
    for c in clients:
        c["rx"] = str(int(c["rx"]) + 1) if c["rx"].isascii() and c["rx"].isdigit() else c["rx"]
    rewrite = render(version, layout, clients, last_t)
    cut = draw(st.sampled_from(["", "", "", "", "", "cut", "junk"]))
    if cut:
        at = draw(st.integers(1, len(text) - 1))
        text = text[:at] if cut == "cut" else text + text[at:]
    return text, rewrite


@given(status_texts(), st.sampled_from(["", "udp", "tcp"]))
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_texts(texts: tuple[str, str], protocol: str) -> None:
    text, rewrite = texts
    previous = agree(text, protocol)
    agree(rewrite, protocol, previous)


@pytest.mark.parametrize(("module", "other"), [("fast", "reference"), ("reference", "fast")])
def test_the_two_parsers_never_import_each_other(module: str, other: str) -> None:
    source = (Path(__file__).resolve().parents[2] / "exporter" / "parser" / f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported |= {node.module or ""} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    assert "exporter.parser.common" in imported
    assert f"exporter.parser.{other}" not in imported and "exporter.parser" not in imported
