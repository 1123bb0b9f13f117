"""`/sessions` and `/sessions_local`: the original's session JSON, keys in its order, every value a string."""

from __future__ import annotations

import json

from exporter.hub import ServerState
from exporter.model import Session


def session_state(session: Session) -> str:
    return "CONNECTING" if session.in_handshake else "ESTABLISHED"


def session_row(server_name: str, session: Session) -> dict[str, str]:
    return {
        "server": server_name,
        "protocol": session.protocol or "udp",
        "p1uniqueid": session.peer_id,
        "p2uniqueid": session.client_id,
        "state": session_state(session),
        "remotehost": session.remote_host,
        "remoteport": session.remote_port,
        "remoteid": session.common_name,
        "remotets": session.virtual_address or session.virtual_ipv6_address,
        "established": session.connected_since,
        "bytesin": str(session.bytes_received),
        "bytesout": str(session.bytes_sent),
        "packetsin": "0",
        "packetsout": "0",
    }


def session_rows(state: ServerState) -> list[dict[str, str]]:
    return [session_row(state.server_name, session) for _, session in state.sessions()]


def render_sessions_json(state: ServerState) -> bytes:
    return json.dumps(session_rows(state), separators=(",", ":")).encode()
