"""The reference parser: every status text OpenVPN writes, read line by line. Read this module as the
specification of the formats; the fast parser (fast.py) returns exactly what this one returns, or declines.

The texts (tests/fixtures holds real ones of each kind):

- status-version 1, OpenVPN's default: "OpenVPN CLIENT LIST", "Updated,<time>", the client header and rows,
  "ROUTING TABLE", the route header and rows, optionally "GLOBAL STATS" and its "name,value" lines, "END".
  Fields are comma-separated and there is no line-type column; client rows carry no virtual address, which
  comes from the routes (common.virtual_addresses).
- status-version 2 (",") and 3 (tab): one record per line, its type first: TITLE, TIME, HEADER (of
  CLIENT_LIST, then of ROUTING_TABLE), CLIENT_LIST and ROUTING_TABLE rows, GLOBAL_STATS, END, in that order.
  Unknown line types are skipped (debug builds print ERRORS lines), unless one is the seam of a torn read.
- OpenVPN 2.3 to 2.7: columns are found by the HEADER lines, never by position, so 2.3's eight client columns
  and 2.5+'s twelve read alike; times are ctime() text up to 2.4 and "YYYY-MM-DD HH:MM:SS" from 2.5; 2.7
  prefixes the Real Address with the socket's protocol ("udp4:1.2.3.4:1194").
- client mode: "OpenVPN STATISTICS", "Updated,<time>", "name,number" counters, "END".
- the management interface's `status 1|2|3` replies are these same texts (its source adds the END).

Comma-separated rows may carry commas inside a common name or username (OpenVPN does not escape them): a
row with extra fields is repaired when exactly one placement of the extras validates, else skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.model import EMPTY_ROUTES, EMPTY_SESSIONS, Route, RouteTable, Session, SessionTable, Snapshot
from exporter.parser.common import (
    ClientLayout,
    RouteLayout,
    StatusParseError,
    client_layout,
    epoch,
    frame,
    is_count,
    is_torn_seam,
    mixed_rows,
    normalise_time,
    plausible_address,
    require,
    route_layout,
    server_snapshot,
    split_real_address,
    updated_text,
    v1_global_stats,
    virtual_addresses,
)


def parse_reference(text: str, default_protocol: str = "") -> Snapshot:
    """Parse one complete status text with "\\n" line ends. `default_protocol` labels sessions whose
    address has no protocol prefix. Raises StatusParseError (TornStatusError when caught mid-rewrite)."""
    form, _ = frame(text)
    lines = text.split("\n")
    while not lines[-1]:
        lines.pop()
    if form == "v1":
        return _server_v1(lines[1:-1], default_protocol)
    if form == "client":
        return _client_mode(lines[1:-1])
    reader = _Reader("\t" if form == "v3" else ",", default_protocol)
    for line in lines[:-1]:
        reader.feed(line)
    return reader.snapshot(3 if form == "v3" else 2)


# Rows.


def session_row(fields: list[str], layout: ClientLayout, default_protocol: str, comma: bool) -> Session | None:
    """The Session of one client row's fields; None for a row that cannot be read unambiguously (a
    comma-separated row with extra fields, repaired in no or several ways); raises on a torn row."""
    if len(fields) != layout.width:
        if not (comma and len(fields) > layout.width):
            raise StatusParseError("malformed", f"client row has {len(fields)} columns, header has {layout.width}")
        repaired = _repair(fields, layout)
        if repaired is None:
            return None
        fields = repaired
    elif not _valid(fields, layout):
        raise StatusParseError("malformed", "client row has a non-numeric count or a bad address")

    def opt(i: int | None) -> str:
        return fields[i] if i is not None else ""

    real = fields[layout.real_address]
    protocol, host, port = split_real_address(real)
    since_t = opt(layout.connected_since_epoch)
    return Session(
        common_name=fields[layout.common_name],
        real_address=real,
        remote_host=host,
        remote_port=port,
        protocol=protocol or default_protocol,
        virtual_address=opt(layout.virtual_address),
        virtual_ipv6_address=opt(layout.virtual_ipv6_address),
        bytes_received=int(fields[layout.bytes_received]),
        bytes_sent=int(fields[layout.bytes_sent]),
        connected_since=normalise_time(opt(layout.connected_since)),
        connected_since_epoch=int(since_t) if since_t else None,
        username=opt(layout.username),
        client_id=opt(layout.client_id),
        peer_id=opt(layout.peer_id),
        cipher=opt(layout.cipher),
    )


def _valid(fields: list[str], layout: ClientLayout) -> bool:
    return all(is_count(fields[i]) for i in layout.counted) and plausible_address(fields[layout.real_address])


def _repair(fields: list[str], layout: ClientLayout) -> list[str] | None:
    """Try each free-text column (CN, username) as the one whose commas made the extra fields; accept the
    answer only if exactly one placement validates. Ambiguity is reported (None), never guessed."""
    extra = len(fields) - layout.width
    answers = []
    for col in layout.free_text:
        candidate = [*fields[:col], ",".join(fields[col : col + extra + 1]), *fields[col + extra + 1 :]]
        if _valid(candidate, layout):
            answers.append(candidate)
    return answers[0] if len(answers) == 1 else None


def route_row(fields: list[str], layout: RouteLayout, comma: bool) -> Route:
    """The Route of one routing-table row's fields; the common name, a route's only free-text column,
    takes any extra comma-separated fields."""
    if len(fields) != layout.width:
        if not (comma and len(fields) > layout.width):
            raise StatusParseError("malformed", f"route row has {len(fields)} columns, header has {layout.width}")
        cn, extra = layout.common_name, len(fields) - layout.width
        fields = [*fields[:cn], ",".join(fields[cn : cn + extra + 1]), *fields[cn + extra + 1 :]]
    last_ref_t = fields[layout.last_ref_epoch] if layout.last_ref_epoch is not None else ""
    if last_ref_t and not is_count(last_ref_t):
        raise StatusParseError("malformed", "route row has a non-numeric Last Ref (time_t)")
    return Route(
        virtual_address=fields[layout.virtual_address],
        common_name=fields[layout.common_name],
        real_address=fields[layout.real_address],
        last_ref=normalise_time(fields[layout.last_ref]) if layout.last_ref is not None else "",
        last_ref_epoch=int(last_ref_t) if last_ref_t else None,
    )


def _check_current(sessions: SessionTable) -> None:
    mixed = mixed_rows(sessions)
    if mixed is not None:
        raise StatusParseError("malformed", mixed)


# status-version 2 and 3.


@dataclass
class _Reader:
    """The state of one status-version 2/3 text read line by line. OpenVPN prints the sections in order:
    0 preamble (TITLE, TIME), 1 client list, 2 routing table, 3 global stats."""

    sep: str
    default_protocol: str
    section: int = 0
    title: str = ""
    time: tuple[str, int | None] = ("", None)
    clients: ClientLayout | None = None
    routes: RouteLayout | None = None
    session_rows: list[Session] = field(default_factory=list)
    route_rows: list[Route] = field(default_factory=list)
    global_stats: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0

    def feed(self, line: str) -> None:
        kind, _, rest = line.partition(self.sep)
        if kind == "CLIENT_LIST":
            if self.section != 1 or self.clients is None:
                raise StatusParseError("malformed", "CLIENT_LIST row outside the client list")
            session = session_row(rest.split(self.sep), self.clients, self.default_protocol, self.sep == ",")
            if session is None:
                self.skipped += 1
            else:
                self.session_rows.append(session)
        elif kind == "ROUTING_TABLE":
            if self.section != 2 or self.routes is None:
                raise StatusParseError("malformed", "ROUTING_TABLE row outside the routing table")
            self.route_rows.append(route_row(rest.split(self.sep), self.routes, self.sep == ","))
        elif kind == "HEADER":
            self.header(rest.split(self.sep))
        elif kind == "GLOBAL_STATS":
            if self.section < 2:
                raise StatusParseError("malformed", "GLOBAL_STATS before the routing table")
            self.section = 3
            name, _, value = rest.partition(self.sep)
            self.global_stats.append((name, value))
        elif kind == "TITLE":
            if self.section != 0 or self.title:
                raise StatusParseError("malformed", "TITLE out of place")
            self.title = rest
        elif kind == "TIME":
            if self.section != 0 or self.time[0]:
                raise StatusParseError("malformed", "TIME out of place")
            text, _, time_t = rest.rpartition(self.sep)
            self.time = (updated_text(text), epoch(time_t))
        elif is_torn_seam(line, self.sep):
            raise StatusParseError("malformed", "a line starts mid-record (torn read)")
        else:
            self.skipped += 1

    def header(self, header: list[str]) -> None:
        if header[0] == "CLIENT_LIST" and self.section == 0:
            self.clients = client_layout(tuple(header[1:]))
            require(self.clients, "client list")
            self.section = 1
        elif header[0] == "ROUTING_TABLE" and self.section == 1:
            self.routes = route_layout(tuple(header[1:]))
            require(self.routes, "routing table")
            self.section = 2
        elif header[0] in ("CLIENT_LIST", "ROUTING_TABLE"):
            raise StatusParseError("malformed", f"HEADER {header[0]} out of order")
        else:
            self.skipped += 1

    def snapshot(self, status_version: int) -> Snapshot:
        if self.section < 2:
            raise StatusParseError("malformed", "status text lacks the client list or routing table header")
        sessions = SessionTable.from_rows(self.session_rows)
        _check_current(sessions)
        tables = (sessions, RouteTable.from_rows(self.route_rows))
        return server_snapshot(status_version, self.title, self.time, tables, tuple(self.global_stats), self.skipped)


# status-version 1.


def _server_v1(body: list[str], default_protocol: str) -> Snapshot:
    if len(body) < 2 or not body[0].startswith("Updated,"):
        raise StatusParseError("malformed", "status-version 1 text lacks its Updated line")
    updated = updated_text(body[0][len("Updated,") :])
    if "ROUTING TABLE" not in body:
        raise StatusParseError("malformed", "status-version 1 text lacks its ROUTING TABLE")
    routing_at = body.index("ROUTING TABLE")
    stats_at = body.index("GLOBAL STATS") if "GLOBAL STATS" in body else len(body)
    if stats_at < routing_at:
        raise StatusParseError("malformed", "GLOBAL STATS before ROUTING TABLE")
    layout = client_layout(tuple(body[1].split(",")))
    require(layout, "client list")
    sessions = [session_row(line.split(","), layout, default_protocol, True) for line in body[2:routing_at]]
    rows = [session for session in sessions if session is not None]
    routes: list[Route] = []
    if routing_at + 1 < stats_at:
        routing = route_layout(tuple(body[routing_at + 1].split(",")))
        require(routing, "routing table")
        routes = [route_row(line.split(","), routing, True) for line in body[routing_at + 2 : stats_at]]
    if rows:
        v4, v6 = virtual_addresses(
            [r.virtual_address for r in routes], [r.real_address for r in routes], [s.real_address for s in rows]
        )
        rows = [s._replace(virtual_address=a, virtual_ipv6_address=b) for s, a, b in zip(rows, v4, v6, strict=True)]
    table = SessionTable.from_rows(rows)
    _check_current(table)
    tables = (table, RouteTable.from_rows(routes))
    skipped = len(sessions) - len(rows)
    return server_snapshot(1, "", (updated, None), tables, v1_global_stats(body[stats_at + 1 :]), skipped)


# Client mode.


def _client_mode(body: list[str]) -> Snapshot:
    """The client's own file: name,value counters, comma-separated whatever status-version says."""
    updated = ""
    stats: list[tuple[str, int]] = []
    for line in body:
        name, _, value = line.rpartition(",")
        if name == "Updated":
            updated = updated_text(value)
        elif name and value.isdigit():
            stats.append((name, int(value)))
        else:
            raise StatusParseError("malformed", "client statistics line is not 'name,number'")
    return Snapshot(
        kind="client",
        status_version=1,
        product="OpenVPN",
        version="",
        title="",
        updated_text=updated,
        updated_epoch=None,
        session_table=EMPTY_SESSIONS,
        route_table=EMPTY_ROUTES,
        global_stats=(),
        client_stats=tuple(stats),
        skipped_lines=0,
    )
