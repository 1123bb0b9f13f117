"""The column-wise JSON writer against the plain encoding of session_rows(), byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.parser import parse_status
from exporter.sources.base import Reading
from exporter.state import ServerState, build_state
from exporter.views.sessions import render_sessions_json, session_rows
from tests.support.common import CAPTURED, FIXTURES

SERVER_FILES = sorted(
    p
    for p in FIXTURES.glob("*/*")
    if p.suffix in (".log", ".status") and "client-status" not in p.name and "torn" not in p.name
)


def state_for(text: str, protocol: str = "udp", server: str = "openvpn-server") -> ServerState:
    snapshot = parse_status(text, protocol)
    reading = Reading("src", "file", "x", protocol, snapshot, 1.0, True, "", 1, ())
    return build_state(server, (reading,), 1.0, 0)


def plain(state: ServerState) -> bytes:
    return json.dumps(session_rows(state), separators=(",", ":")).encode()


@pytest.mark.parametrize("path", SERVER_FILES, ids=[p.name for p in SERVER_FILES])
def test_every_fixture_encodes_like_json_dumps(path: Path) -> None:
    state = state_for(path.read_text(), "tcp")
    assert render_sessions_json(state) == plain(state)


@settings(max_examples=200, deadline=None)
@given(
    cn=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40), server=st.text(max_size=20)
)
def test_any_common_name_and_server_name_encode_like_json_dumps(cn: str, server: str) -> None:
    if "\t" in cn or cn == "UNDEF":
        return
    text = (CAPTURED / "server-udp-status-v3.log").read_text().replace("client2", cn)
    state = state_for(text, server=server)
    body = render_sessions_json(state)
    assert body == plain(state)
    assert {row["remoteid"] for row in json.loads(body)} == {"client1", cn}
