"""Property-based tests: whatever a status file or a client-chosen name holds, the parser answers with a
Snapshot or StatusParseError, and the exposition, the JSON and the HTML stay well-formed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from security.harness import status_v3

from exporter.config import MetricsConfig
from exporter.model import Snapshot
from exporter.parser import StatusParseError, parse_status
from exporter.sources.base import Reading
from exporter.state import build_state
from exporter.views.metrics import render_metrics
from exporter.views.pages import render_sessions_page
from exporter.views.sessions import render_sessions_json
from tests.support.common import FIXTURES, tool

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=int(1500 * SCALE),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SAMPLES = sorted(p.read_bytes() for p in FIXTURES.rglob("*") if p.is_file() and not p.name.startswith("mgmt-"))
# What promtool may say about the contract's own names (SPEC 2.2 keeps them as the original had them).
EXPECTED_LINT = {
    'ovpn_info counter metrics should have "_total" suffix',
    'ovpn_sessions_total non-counter metrics should not have "_total" suffix',
}
# A client's common name or username: anything OpenVPN can print on one line of a tab-separated file.
NAME = st.text(st.characters(exclude_characters="\t\n\x00", exclude_categories=("Cs",)), max_size=40)
ran: dict[str, int] = {}


def count(name: str) -> None:
    ran[name] = ran.get(name, 0) + 1


def parse_or_typed_error(data: bytes) -> Snapshot | None:
    try:
        snapshot = parse_status(data, "udp")
    except StatusParseError as exc:
        assert exc.reason  # noqa: PT017 (the property is about the exception's type and its reason)
        return None
    assert isinstance(snapshot, Snapshot)
    return snapshot


@FUZZ
@given(st.binary(max_size=4096))
def test_any_bytes_give_a_snapshot_or_the_typed_error(data: bytes) -> None:
    count("parser: arbitrary bytes")
    parse_or_typed_error(data)


@st.composite
def mutated_status(draw: st.DrawFn) -> bytes:
    """A real status file, then damaged the way a torn read or a broken writer damages it."""
    lines = draw(st.sampled_from(SAMPLES)).split(b"\n")
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        action = draw(st.sampled_from(["drop", "dup", "swap", "cut", "junk", "sep", "crlf", "append"]))
        if action == "drop" and lines:
            del lines[at]
        elif action == "dup" and lines:
            lines.insert(at, lines[at])
        elif action == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif action == "cut" and lines:
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        elif action == "junk":
            lines.insert(at, draw(st.binary(max_size=60)))
        elif action == "sep" and lines:
            lines[at] = lines[at].replace(b"\t", b",") if b"\t" in lines[at] else lines[at].replace(b",", b"\t")
        elif action == "crlf" and lines:
            lines[at] += b"\r"
        elif action == "append":
            lines.append(draw(st.sampled_from([b"END", b"", b"CLIENT_LIST", b"EN"])))
    return b"\n".join(lines)


@FUZZ
@given(mutated_status())
def test_damaged_real_files_give_a_snapshot_or_the_typed_error(data: bytes) -> None:
    count("parser: damaged real files")
    snapshot = parse_or_typed_error(data)
    if snapshot is not None:
        state = state_of(snapshot)
        render_metrics(state, MetricsConfig())
        json.loads(render_sessions_json(state))
        render_sessions_page(state)


def state_of(*snapshots: Snapshot) -> object:
    readings = tuple(
        Reading(f"s{i}", "file", f"/s{i}", "udp", s, time.time(), True, "", 1, ()) for i, s in enumerate(snapshots)
    )
    return build_state("openvpn-server", readings, time.time(), 0)


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.cells: list[str] = []
        self._in_td = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "td":
            self._in_td, self._text = True, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._in_td:
            self.cells.append(self._text)
            self._in_td = False

    def handle_data(self, data: str) -> None:
        if self._in_td:
            self._text += data


def tags_of(page: str) -> list[str]:
    parser = _Cells()
    parser.feed(page)
    return parser.tags


BENIGN_TAGS = tags_of(render_sessions_page(state_of(parse_status(status_v3([("alice", "UNDEF", 1, 2)])))))  # type: ignore[arg-type]
expositions: list[str] = []


@FUZZ
@given(st.lists(st.tuples(NAME, NAME, st.integers(0, 2**62), st.integers(0, 2**62)), min_size=1, max_size=6))
def test_any_names_render_safely(rows: list[tuple[str, str, int, int]]) -> None:
    count("renderers: arbitrary CN/username")
    snapshot = parse_status(status_v3(rows))
    assert [s.common_name for s in snapshot.sessions] == [cn for cn, *_ in rows]
    assert [s.username for s in snapshot.sessions] == [user for _, user, *_ in rows]
    state = state_of(snapshot)

    # Exposition: the Python parser reads every label back exactly; promtool runs once over them all below.
    body = render_metrics(state, MetricsConfig())  # type: ignore[arg-type]
    expositions.append(body)
    expected: dict[str, int] = {}
    for cn, _, rx, _ in rows:
        if cn != "UNDEF":
            expected[f"{cn}_udp"] = expected.get(f"{cn}_udp", 0) + rx
    families = {f.name: f for f in text_string_to_metric_families(body)}
    got = {s.labels["client"]: s.value for s in families["ovpn_bytes_in"].samples} if expected else {}
    assert got == expected
    sessions = (
        families["ovpn_sessions"].samples if "ovpn_sessions" in families else families["ovpn_sessions_total"].samples
    )
    assert sessions[0].value == sum(1 for cn, *_ in rows if cn != "UNDEF")

    # JSON round-trips every name.
    decoded = json.loads(render_sessions_json(state))  # type: ignore[arg-type]
    assert [row["remoteid"] for row in decoded] == [cn for cn, *_ in rows]

    # HTML: the same element structure as for a benign name, and every name back as text.
    page = render_sessions_page(state)  # type: ignore[arg-type]
    parser = _Cells()
    parser.feed(page)
    parser.close()
    per_row = BENIGN_TAGS.count("tr") - 1
    assert parser.tags.count("tr") == len(rows) + 1
    assert set(parser.tags) == set(BENIGN_TAGS)
    assert parser.tags.count("td") == len(rows) * (BENIGN_TAGS.count("td") // max(per_row, 1))
    texts = parser.cells
    for cn, *_ in rows:
        assert cn in texts


def promtool() -> str:
    return tool("promtool", "apt-get install prometheus", Path("/usr/bin/promtool"))


def check_metrics(binary: str, body: str) -> tuple[int, set[str]]:
    result = subprocess.run(
        [binary, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60, check=False
    )
    findings = {line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()}
    return result.returncode, findings


def test_promtool_parses_every_fuzzed_exposition() -> None:
    """Runs after test_any_names_render_safely (file order): all its examples in a few promtool calls.

    Each exposition is checked on its own only if a batch fails. A batch is one exposition built from
    every example's sessions at once, so a name that breaks the format breaks the batch.
    """
    binary = promtool()
    if not expositions:
        test_any_names_render_safely()
    names: list[tuple[str, str, int, int]] = []
    for body in expositions:
        for family in text_string_to_metric_families(body):
            if family.name == "ovpn_bytes_in":
                names += [(s.labels["client"][: -len("_udp")], "UNDEF", int(s.value), 1) for s in family.samples]
    random.Random(0).shuffle(names)
    batches = [names[i : i + 500] for i in range(0, len(names), 500)] or [[]]
    calls = 0
    for batch in batches:
        body = render_metrics(state_of(parse_status(status_v3(batch))), MetricsConfig())  # type: ignore[arg-type]
        status, findings = check_metrics(binary, body)
        calls += 1
        if status not in (0, 3) or not findings <= EXPECTED_LINT:
            bad = [b for b in expositions if check_metrics(binary, b)[0] not in (0, 3)]
            pytest.fail(f"promtool exit {status}: {sorted(findings - EXPECTED_LINT)[:5]}; first bad body: {bad[:1]}")
    count_examples = ran.get("renderers: arbitrary CN/username", 0)
    print(
        f"\npromtool check metrics: {count_examples} fuzzed expositions ({len(names)} client labels) in {calls} call(s)"
    )


def test_zz_report_fuzz_figures() -> None:
    print("\nfuzz examples run: " + ", ".join(f"{k}: {v}" for k, v in sorted(ran.items())))
    assert sum(ran.values()) > 0
