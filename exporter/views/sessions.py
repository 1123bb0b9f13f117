"""`/sessions` and `/sessions_local`: the original's session JSON, keys in its order, every value a string."""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring_ascii

from exporter.hub import ServerState
from exporter.model import HANDSHAKE_CN, Session
from exporter.views.metrics import counter_text, live_column, live_tables


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


def _json_column(values: Sequence[str]) -> tuple[str, Sequence[str]]:
    """A template slot and the values for it: raw inside quotes when no value needs escaping."""
    joined = "".join(values)
    # json.dumps (ensure_ascii) leaves exactly the printable ASCII (" " to "~") other than `"` and `\`
    # as they are; isascii() and isprintable() test that range in C, faster than a regex scan.
    if joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined:
        return '"%s"', values
    return "%s", list(map(encode_basestring_ascii, values))


def _constant(value: str) -> str:
    return encode_basestring_ascii(value).replace("%", "%%")


def render_sessions_json(state: ServerState) -> bytes:
    """The same bytes as json.dumps(session_rows(state), separators=(",", ":")), written column by column.

    One %-template per response, applied to every row by a C-level map over the snapshot's columns: no
    row object, no dict per row, no encoder walk, and values are escaped only in the columns where some
    value needs it.
    """
    tables = live_tables(state)
    if not any(tables):
        return b"[]"

    def column(name: str) -> Sequence[str]:
        return live_column(tables, name)

    names = column("common_name")
    protocols = column("protocol")
    if "" in protocols:
        protocols = [p or "udp" for p in protocols]
    tunnel = column("virtual_address")
    if "" in tunnel:
        tunnel = [v4 or v6 for v4, v6 in zip(tunnel, column("virtual_ipv6_address"), strict=True)]
    slots: list[str] = []
    args: list[Sequence[object]] = []

    def text(key: str, values: Sequence[str]) -> None:
        slot, escaped = _json_column(values)
        slots.append(f'"{key}":{slot}')
        args.append(escaped)

    slots.append(f'"server":{_constant(state.server_name)}')
    text("protocol", protocols)
    text("p1uniqueid", column("peer_id"))
    text("p2uniqueid", column("client_id"))
    if HANDSHAKE_CN in names:
        text("state", ["CONNECTING" if name == HANDSHAKE_CN else "ESTABLISHED" for name in names])
    else:
        slots.append('"state":"ESTABLISHED"')
    text("remotehost", column("remote_host"))
    text("remoteport", column("remote_port"))
    text("remoteid", names)
    text("remotets", tunnel)
    text("established", column("connected_since"))
    slots += ['"bytesin":"%s"', '"bytesout":"%s"', '"packetsin":"0"', '"packetsout":"0"']
    args += [counter_text(tables, "bytes_received"), counter_text(tables, "bytes_sent")]
    template = "{" + ",".join(slots) + "}"
    return ("[" + ",".join(map(template.__mod__, zip(*args, strict=True))) + "]").encode()
