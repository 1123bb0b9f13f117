"""Parse OpenVPN status text into a Snapshot. Pure: no I/O, no clock.

Formats: server status-version 1 (sections), 2 (comma) and 3 (tab), autodetected from the first line;
the client-mode "OpenVPN STATISTICS" file; the management interface's `status` output (CRLF).
Columns are found by the HEADER lines, never by position, so 2.3's eight columns and 2.5+'s twelve
parse alike.

The only exception that leaves this module is StatusParseError (TornStatusError for the torn cases):
whatever the bytes, the caller gets a Snapshot or that.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.model import Route, Session, Snapshot

MONTHS = {
    "Jan": "01", "Feb": "02", "Mar": "03", "Apr": "04", "May": "05", "Jun": "06",
    "Jul": "07", "Aug": "08", "Sep": "09", "Oct": "10", "Nov": "11", "Dec": "12",
}  # fmt: skip

# 2.7 prefixes the Real Address with the socket's protocol; anything else before a colon is an address.
_PROTOCOL_PREFIXES = {
    f"{proto}{family}{role}": proto
    for proto in ("udp", "tcp")
    for family in ("", "4", "6")
    for role in (("",) if proto == "udp" else ("", "-server", "-client"))
}

_KNOWN_TYPES = ("TITLE", "TIME", "HEADER", "CLIENT_LIST", "ROUTING_TABLE", "GLOBAL_STATS", "END")
# A line that starts with the tail of a known type is the seam of a torn read, not a new line type.
_FRAGMENTS = frozenset(t[i:] for t in _KNOWN_TYPES for i in range(1, len(t)))

_CLIENT_REQUIRED = ("Common Name", "Real Address", "Bytes Received", "Bytes Sent")
_ROUTE_REQUIRED = ("Virtual Address", "Common Name", "Real Address")


class StatusParseError(Exception):
    """The text is not a complete, well-formed status. `reason` is a short metric-friendly word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class TornStatusError(StatusParseError):
    """The text was caught mid-rewrite: END missing, or content after END."""


def split_real_address(address: str) -> tuple[str, str, str]:
    """Return (protocol or "", host, port or "") for every Real Address form OpenVPN has printed."""
    protocol = ""
    head, sep, tail = address.partition(":")
    if sep and head in _PROTOCOL_PREFIXES:
        protocol = _PROTOCOL_PREFIXES[head]
        address = tail
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            return protocol, address, ""
        rest = address[end + 1 :]
        return protocol, address[1:end], rest[1:] if rest.startswith(":") else ""
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return protocol, host, port
    # Bare IPv6 (OpenVPN up to 2.6 prints no port for it) or an address without a port.
    return protocol, address, ""


def normalise_time(text: str) -> str:
    """ctime() text (up to 2.4) becomes "YYYY-MM-DD HH:MM:SS"; 2.5+ text already is; else ""."""
    if len(text) == 19 and text[4] == "-" and text[10] == " ":
        return text
    parts = text.split()
    if len(parts) == 5 and parts[1] in MONTHS and parts[2].isdigit() and parts[4].isdigit():
        return f"{parts[4]}-{MONTHS[parts[1]]}-{int(parts[2]):02d} {parts[3]}"
    return ""


def _epoch(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _is_count(text: str) -> bool:
    return text.isdigit()


def _plausible_address(text: str) -> bool:
    return bool(text) and " " not in text and "," not in text


def parse_status(data: bytes | str, default_protocol: str = "") -> Snapshot:
    """Parse one complete status text. `default_protocol` labels sessions whose address has no prefix."""
    try:
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        return _parse(text, default_protocol)
    except StatusParseError:
        raise
    except Exception as exc:  # the promise: nothing but StatusParseError escapes, whatever the input
        raise StatusParseError("malformed", f"unparseable status text ({type(exc).__name__})") from exc


def _parse(text: str, default_protocol: str) -> Snapshot:
    if not text.strip():
        raise StatusParseError("empty", "status text is empty")
    if "\x00" in text:
        raise StatusParseError("malformed", "status text contains NUL bytes: not an OpenVPN status file")
    lines = text.split("\n")
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    first = lines[0]
    if first not in ("OpenVPN CLIENT LIST", "OpenVPN STATISTICS") and not first.startswith(("TITLE", "TIME", "HEADER")):
        raise StatusParseError("format", "not an OpenVPN status file (unrecognised first line)")
    if lines[-1] != "END":
        raise TornStatusError("torn", "status text does not end with END (caught mid-rewrite)")
    if lines.count("END") != 1:
        raise TornStatusError("torn", "status text has content after END (caught mid-rewrite)")
    body = lines[:-1]
    if first == "OpenVPN CLIENT LIST":
        return _parse_v1(body, default_protocol)
    if first == "OpenVPN STATISTICS":
        return _parse_client_mode(body)
    token = next(t for t in ("TITLE", "TIME", "HEADER") if first.startswith(t))
    separator = first[len(token) : len(token) + 1]
    if separator not in ("\t", ","):
        raise StatusParseError("format", "not an OpenVPN status file (unrecognised first line)")
    return _parse_v2v3(body, separator, 3 if separator == "\t" else 2, default_protocol)


def _columns(header: list[str], required: tuple[str, ...], what: str) -> dict[str, int]:
    index = {name: i for i, name in enumerate(header)}
    missing = [name for name in required if name not in index]
    if missing:
        raise StatusParseError("format", f"{what} header lacks column(s): {', '.join(missing)}")
    return index


def _recover(
    fields: list[str], width: int, free_columns: list[int], valid: Callable[[list[str]], bool]
) -> list[str] | None:
    """A comma-separated row with extra fields: some free-text column (a CN or username) held commas.

    Try each free-text column as the one that absorbs the extras; accept the answer only if exactly one
    placement gives a row whose typed columns all validate. Ambiguity is reported, never guessed.
    """
    extra = len(fields) - width
    if extra <= 0:
        return None
    answers = []
    for col in free_columns:
        candidate = [*fields[:col], ",".join(fields[col : col + extra + 1]), *fields[col + extra + 1 :]]
        if valid(candidate):
            answers.append(candidate)
    return answers[0] if len(answers) == 1 else None


def _session_validator(index: dict[str, int]) -> Callable[[list[str]], bool]:
    counts = [index[name] for name in ("Bytes Received", "Bytes Sent") if name in index]
    counts += [index[n] for n in ("Client ID", "Peer ID") if n in index]
    epochs = [index[n] for n in ("Connected Since (time_t)",) if n in index]
    real = index["Real Address"]

    def valid(row: list[str]) -> bool:
        return (
            all(_is_count(row[i]) for i in counts)
            and all(_is_count(row[i]) for i in epochs)
            and _plausible_address(row[real])
        )

    return valid


class _SessionBuilder:
    """Turns CLIENT_LIST rows into Sessions with the column indexes resolved once."""

    def __init__(self, header: list[str], default_protocol: str) -> None:
        self.index = _columns(header, _CLIENT_REQUIRED, "client list")
        self.width = len(header)
        self.default_protocol = default_protocol
        self.valid = _session_validator(self.index)
        self.free = [self.index[n] for n in ("Common Name", "Username") if n in self.index]
        get = self.index.get
        self.i_cn = self.index["Common Name"]
        self.i_real = self.index["Real Address"]
        self.i_rx = self.index["Bytes Received"]
        self.i_tx = self.index["Bytes Sent"]
        self.i_v4 = get("Virtual Address")
        self.i_v6 = get("Virtual IPv6 Address")
        self.i_since = get("Connected Since")
        self.i_since_t = get("Connected Since (time_t)")
        self.i_user = get("Username")
        self.i_cid = get("Client ID")
        self.i_pid = get("Peer ID")
        self.i_cipher = get("Data Channel Cipher")

    def build(self, fields: list[str], comma_separated: bool) -> Session | None:
        """A Session, None for a row that cannot be read unambiguously; raises on a torn row."""
        if len(fields) != self.width:
            recovered = (
                _recover(fields, self.width, self.free, self.valid)
                if comma_separated and len(fields) > self.width
                else None
            )
            if recovered is None:
                if comma_separated and len(fields) > self.width:
                    return None
                raise StatusParseError("malformed", f"client row has {len(fields)} columns, header has {self.width}")
            fields = recovered
        elif not self.valid(fields):
            raise StatusParseError("malformed", "client row has a non-numeric count or a bad address")

        def opt(i: int | None) -> str:
            return fields[i] if i is not None else ""

        real = fields[self.i_real]
        protocol, host, port = split_real_address(real)
        since_t = opt(self.i_since_t)
        return Session(
            common_name=fields[self.i_cn],
            real_address=real,
            remote_host=host,
            remote_port=port,
            protocol=protocol or self.default_protocol,
            virtual_address=opt(self.i_v4),
            virtual_ipv6_address=opt(self.i_v6),
            bytes_received=int(fields[self.i_rx]),
            bytes_sent=int(fields[self.i_tx]),
            connected_since=normalise_time(opt(self.i_since)),
            connected_since_epoch=int(since_t) if since_t else None,
            username=opt(self.i_user),
            client_id=opt(self.i_cid),
            peer_id=opt(self.i_pid),
            cipher=opt(self.i_cipher),
        )


def _build_route(fields: list[str], index: dict[str, int], width: int, comma: bool) -> Route:
    if len(fields) != width:
        if not (comma and len(fields) > width):
            raise StatusParseError("malformed", f"route row has {len(fields)} columns, header has {width}")
        # The Common Name is the only free-text column of a route.
        cn = index["Common Name"]
        extra = len(fields) - width
        fields = [*fields[:cn], ",".join(fields[cn : cn + extra + 1]), *fields[cn + extra + 1 :]]
    last_ref_t = fields[index["Last Ref (time_t)"]] if "Last Ref (time_t)" in index else ""
    if last_ref_t and not last_ref_t.isdigit():
        raise StatusParseError("malformed", "route row has a non-numeric Last Ref (time_t)")
    return Route(
        virtual_address=fields[index["Virtual Address"]],
        common_name=fields[index["Common Name"]],
        real_address=fields[index["Real Address"]],
        last_ref=normalise_time(fields[index["Last Ref"]]) if "Last Ref" in index else "",
        last_ref_epoch=int(last_ref_t) if last_ref_t else None,
    )


def _check_unique_connections(sessions: list[Session]) -> None:
    """Two rows for one connection mean old and new content were mixed by a torn read."""
    ids = [s.client_id for s in sessions if s.client_id]
    if len(ids) != len(set(ids)):
        raise StatusParseError("malformed", "a Client ID appears twice (mixed old and new content)")
    if not ids:
        addresses = [s.real_address for s in sessions if s.remote_port]
        if len(addresses) != len(set(addresses)):
            raise StatusParseError("malformed", "a Real Address appears twice (mixed old and new content)")


def _unknown_line(line: str, separator: str) -> None:
    """Skip a line of a type this parser does not know, unless it is the seam of a torn read."""
    token = line.split(separator, 1)[0]
    if line.startswith(("HEADER,ERRORS", "ERRORS,")):
        return  # debug builds print these comma-separated even in status-version 3
    if token in _FRAGMENTS or not token or not (token[0].isupper() and token.replace("_", "").isalnum()):
        raise StatusParseError("malformed", "a line starts mid-record (torn read)")


def _parse_v2v3(body: list[str], sep: str, status_version: int, default_protocol: str) -> Snapshot:
    comma = sep == ","
    title = updated_text = ""
    updated_epoch: int | None = None
    sessions: list[Session] = []
    routes: list[Route] = []
    global_stats: list[tuple[str, str]] = []
    builder: _SessionBuilder | None = None
    route_index: dict[str, int] | None = None
    route_width = 0
    skipped = 0
    section = 0  # 0 preamble, 1 client list, 2 routing table, 3 global stats: OpenVPN prints them in order

    for line in body:
        kind, _, rest = line.partition(sep)
        if kind == "CLIENT_LIST":
            if section != 1 or builder is None:
                raise StatusParseError("malformed", "CLIENT_LIST row outside the client list")
            session = builder.build(rest.split(sep), comma)
            if session is None:
                skipped += 1
            else:
                sessions.append(session)
        elif kind == "ROUTING_TABLE":
            if section != 2 or route_index is None:
                raise StatusParseError("malformed", "ROUTING_TABLE row outside the routing table")
            routes.append(_build_route(rest.split(sep), route_index, route_width, comma))
        elif kind == "HEADER":
            header = rest.split(sep)
            if header[0] == "CLIENT_LIST" and section == 0:
                builder = _SessionBuilder(header[1:], default_protocol)
                section = 1
            elif header[0] == "ROUTING_TABLE" and section == 1:
                route_index = _columns(header[1:], _ROUTE_REQUIRED, "routing table")
                route_width = len(header) - 1
                section = 2
            elif header[0] in ("CLIENT_LIST", "ROUTING_TABLE"):
                raise StatusParseError("malformed", f"HEADER {header[0]} out of order")
            else:
                skipped += 1
        elif kind == "GLOBAL_STATS":
            if section < 2:
                raise StatusParseError("malformed", "GLOBAL_STATS before the routing table")
            section = 3
            name, _, value = rest.partition(sep)
            global_stats.append((name, value))
        elif kind == "TITLE":
            if section != 0 or title:
                raise StatusParseError("malformed", "TITLE out of place")
            title = rest
        elif kind == "TIME":
            if section != 0 or updated_text:
                raise StatusParseError("malformed", "TIME out of place")
            text, _, epoch = rest.rpartition(sep)
            updated_text, updated_epoch = normalise_time(text) or text, _epoch(epoch)
        else:
            _unknown_line(line, sep)
            skipped += 1

    if section < 2:
        raise StatusParseError("malformed", "status text lacks the client list or routing table header")
    _check_unique_connections(sessions)
    product, version = _product_version(title)
    return Snapshot(
        kind="server",
        status_version=status_version,
        product=product,
        version=version,
        title=title,
        updated_text=updated_text,
        updated_epoch=updated_epoch,
        sessions=tuple(sessions),
        routes=tuple(routes),
        global_stats=tuple(global_stats),
        client_stats=(),
        skipped_lines=skipped,
    )


def _product_version(title: str) -> tuple[str, str]:
    """ "OpenVPN 2.6.15 [git:...] x86_64-..." gives ("OpenVPN", "2.6.15")."""
    parts = title.split(" ", 2)
    if len(parts) >= 2 and parts[1][:1].isdigit():
        return parts[0], parts[1]
    return (parts[0] or "OpenVPN"), ""


def _parse_v1(body: list[str], default_protocol: str) -> Snapshot:
    """status-version 1: sections with their own header lines, no line-type column."""
    if len(body) < 3 or not body[1].startswith("Updated,"):
        raise StatusParseError("malformed", "status-version 1 text lacks its Updated line")
    updated_text = normalise_time(body[1][len("Updated,") :]) or body[1][len("Updated,") :]
    try:
        routing_at = body.index("ROUTING TABLE")
    except ValueError:
        raise StatusParseError("malformed", "status-version 1 text lacks its ROUTING TABLE") from None
    stats_at = body.index("GLOBAL STATS") if "GLOBAL STATS" in body else len(body)
    if stats_at < routing_at:
        raise StatusParseError("malformed", "GLOBAL STATS before ROUTING TABLE")

    builder = _SessionBuilder(body[2].split(","), default_protocol)
    sessions: list[Session] = []
    skipped = 0
    for line in body[3:routing_at]:
        session = builder.build(line.split(","), comma_separated=True)
        if session is None:
            skipped += 1
        else:
            sessions.append(session)

    routes: list[Route] = []
    if routing_at + 1 < stats_at:
        route_header = body[routing_at + 1].split(",")
        route_index = _columns(route_header, _ROUTE_REQUIRED, "routing table")
        for line in body[routing_at + 2 : stats_at]:
            routes.append(_build_route(line.split(","), route_index, len(route_header), True))
    global_stats = tuple((name, value) for name, _, value in (line.rpartition(",") for line in body[stats_at + 1 :]))
    _check_unique_connections(sessions)
    return Snapshot(
        kind="server",
        status_version=1,
        product="OpenVPN",
        version="",
        title="",
        updated_text=updated_text,
        updated_epoch=None,
        sessions=_join_virtual_addresses(sessions, routes),
        routes=tuple(routes),
        global_stats=global_stats,
        client_stats=(),
        skipped_lines=skipped,
    )


def _join_virtual_addresses(sessions: list[Session], routes: list[Route]) -> tuple[Session, ...]:
    """v1 has no virtual address column: take it from the routes, keyed by the connection's Real Address.

    A client may own several routes (IPv4, IPv6, iroutes like 10.1.0.0/24, cached `C` entries, MACs in
    TAP mode): the host address of each family is its virtual address.
    """
    v4: dict[str, str] = {}
    v6: dict[str, str] = {}
    for route in routes:
        address = route.virtual_address
        if "/" in address or address.endswith("C") or "@" in address:
            continue
        if address.count(".") == 3 and ":" not in address:
            v4.setdefault(route.real_address, address)
        elif ":" in address and address.count(":") != 5:  # five colons: a MAC, not IPv6
            v6.setdefault(route.real_address, address)
    return tuple(
        s._replace(virtual_address=v4.get(s.real_address, ""), virtual_ipv6_address=v6.get(s.real_address, ""))
        for s in sessions
    )


def _parse_client_mode(body: list[str]) -> Snapshot:
    """The client's own file: name,value counters, comma-separated whatever status-version says."""
    updated_text = ""
    stats: list[tuple[str, int]] = []
    for line in body[1:]:
        name, _, value = line.rpartition(",")
        if name == "Updated":
            updated_text = normalise_time(value) or value
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
        updated_text=updated_text,
        updated_epoch=None,
        sessions=(),
        routes=(),
        global_stats=(),
        client_stats=tuple(stats),
        skipped_lines=0,
    )
