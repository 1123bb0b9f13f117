"""`/sessions` and `/sessions_local`: the original's session JSON, keys in its order, every value a string."""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring_ascii

from exporter.model import HANDSHAKE_CN, Session
from exporter.state import ServerState
from exporter.views.columns import counter_text, live_column, live_tables, protocol_label, protocol_labels


def session_state(session: Session) -> str:
    return "CONNECTING" if session.in_handshake else "ESTABLISHED"


def session_row(server_name: str, session: Session) -> dict[str, str]:
    return {
        "server": server_name,
        "protocol": protocol_label(session.protocol),
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


def _json_column(values: Sequence[str]) -> tuple[bool, Sequence[str]]:
    """Whether the values go inside quotes as they are, and the values: raw when none needs escaping,
    else each encoded with its quotes."""
    joined = "".join(values)
    # json.dumps (ensure_ascii) leaves exactly the printable ASCII (" " to "~") other than `"` and `\`
    # as they are; isascii() and isprintable() test that range in C, faster than a regex scan.
    if joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined:
        return True, values
    return False, list(map(encode_basestring_ascii, values))


class _Rows:
    """JSON objects of identical shape, one per row: constant text between value columns."""

    def __init__(self) -> None:
        self.constants = [""]  # constants[i] comes before columns[i]; the last one ends a row
        self.columns: list[Sequence[str]] = []

    def text(self, value: str) -> None:
        self.constants[-1] += value

    def column(self, values: Sequence[str], quoted: bool) -> None:
        """Values that need quotes around them (`quoted`) or carry their own."""
        if quoted:
            self.text('"')
        self.columns.append(values)
        self.constants.append('"' if quoted else "")

    def array(self, count: int) -> str:
        """`[row,row,...]` as one join over [value, constant, value, ..., end-of-row and start-of-next]:
        each piece is copied once, with no string per row and no per-row formatting."""
        if not self.columns:
            return "[" + ",".join([self.constants[0]] * count) + "]"
        first, *between, last = self.constants
        width = 2 * len(self.columns)
        pieces = [last + "," + first] * (width * count)
        for i, values in enumerate(self.columns):
            pieces[2 * i :: width] = values
            if i < len(between):
                pieces[2 * i + 1 :: width] = [between[i]] * count
        pieces[-1] = last
        return "[" + first + "".join(pieces) + "]"


def render_sessions_json(state: ServerState) -> bytes:
    """The same bytes as json.dumps(session_rows(state), separators=(",", ":")), written column by column
    over the snapshot's columns: no row object, no dict per row, no encoder walk, and values are escaped
    only in the columns where some value needs it.
    """
    tables = live_tables(state)
    if not any(tables):
        return b"[]"

    def column(name: str) -> Sequence[str]:
        return live_column(tables, name)

    names = column("common_name")
    protocols = protocol_labels(column("protocol"))
    tunnel = column("virtual_address")
    if "" in tunnel:
        tunnel = [v4 or v6 for v4, v6 in zip(tunnel, column("virtual_ipv6_address"), strict=True)]
    rows = _Rows()

    def text(key: str, values: Sequence[str]) -> None:
        rows.text(f',"{key}":')
        quoted, escaped = _json_column(values)
        rows.column(escaped, quoted)

    rows.text(f'{{"server":{encode_basestring_ascii(state.server_name)}')
    text("protocol", protocols)
    text("p1uniqueid", column("peer_id"))
    text("p2uniqueid", column("client_id"))
    if HANDSHAKE_CN in names:
        text("state", ["CONNECTING" if name == HANDSHAKE_CN else "ESTABLISHED" for name in names])
    else:
        rows.text(',"state":"ESTABLISHED"')
    text("remotehost", column("remote_host"))
    text("remoteport", column("remote_port"))
    text("remoteid", names)
    text("remotets", tunnel)
    text("established", column("connected_since"))
    rows.text(',"bytesin":')
    rows.column(counter_text(tables, "bytes_received"), quoted=True)
    rows.text(',"bytesout":')
    rows.column(counter_text(tables, "bytes_sent"), quoted=True)
    rows.text(',"packetsin":"0","packetsout":"0"}')
    return rows.array(len(names)).encode()
