"""Parse OpenVPN status text into a Snapshot. Pure: no I/O, no clock.

Formats: server status-version 1 (sections), 2 (comma) and 3 (tab), autodetected from the first line;
the client-mode "OpenVPN STATISTICS" file; the management interface's `status` output (CRLF).
Columns are found by the HEADER lines, never by position, so 2.3's eight columns and 2.5+'s twelve
parse alike.

The only exception that leaves this module is StatusParseError (TornStatusError for the torn cases):
whatever the bytes, the caller gets a Snapshot or that.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import repeat
from operator import methodcaller
from typing import Any

from exporter.model import (
    EMPTY_ROUTES,
    EMPTY_SESSIONS,
    HANDSHAKE_CN,
    LazyRouteTable,
    LazySessionTable,
    Route,
    RouteTable,
    Session,
    SessionTable,
    Snapshot,
)

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
_COUNTED = ("Bytes Received", "Bytes Sent", "Client ID", "Peer ID", "Connected Since (time_t)")


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


# The fast path below builds rows column by column with C-level loops (map, zip, str methods) and hands
# a block back to the line-by-line code whenever anything about it is unusual; the line-by-line code is
# the reference behaviour, the fast path only ever reproduces what it would have built.
_BLOCK = 4096  # rows split at a time: bounds the transient lists of a 100,000-row file
_BLOCK_CHARS = 1 << 17  # text split into fields at a time: about 1,000 client rows, still in the cache
_SESSION_WIDTH = len(Session._fields)
_ROUTE_WIDTH = len(Route._fields)
# A column whose values are all "YYYY-MM-DD HH:MM:SS"-shaped is what normalise_time returns unchanged.
_NEW_STYLE_TIMES = re.compile(r"(?:[^\n]{4}-[^\n]{5} [^\n]{8}\n)*")
_LEADING_ZERO = re.compile(r"^0[0-9]", re.MULTILINE)
_count_colons = methodcaller("count", ":")
_is_digit = str.isdigit


def _all_counts(column: Sequence[str]) -> bool:
    # Every value non-empty and the concatenation all digits: the answer of all(map(str.isdigit, column))
    # without a call per value.
    return not column or (all(column) and "".join(column).isdigit())


def _canonical_counts(joined: str) -> bool:
    """Whether digit strings (validated, joined by newlines) are each exactly str(int(value)): ASCII, no
    leading zero."""
    if not joined.isascii():
        return False
    # No value starts with 0 at all (a substring search) is the usual answer; else look closer.
    return ("\n0" not in joined and not joined.startswith("0")) or _LEADING_ZERO.search(joined) is None


def _ints(text: str) -> Iterable[int]:
    return map(int, text.split("\n"))


def _ints_at(values: Callable[[int], list[str]], i: int) -> Iterable[int]:
    return map(int, values(i))


def _times(column: Sequence[str]) -> Sequence[str]:
    """normalise_time over a column, skipping the per-value call when every value is already 2.5+ text."""
    if _NEW_STYLE_TIMES.fullmatch("\n".join(column) + "\n"):
        return column
    return list(map(normalise_time, column))


def _split_addresses(column: Sequence[str], default_protocol: str) -> tuple[Iterable[str], ...]:
    """split_real_address over a column: (protocols, hosts, ports), the usual forms without a call per row."""
    joined = ":".join(column)
    if "[" not in joined:
        colons = set(map(_count_colons, column))
        if colons == {1}:  # "1.2.3.4:port", up to 2.6
            fields = joined.split(":")
            if _PROTOCOL_PREFIXES.keys().isdisjoint(fields[0::2]):
                return repeat(default_protocol, len(column)), fields[0::2], fields[1::2]
        elif colons == {2}:  # 2.7's "udp4:1.2.3.4:port": the prefix gives the protocol, never empty
            fields = joined.split(":")
            prefixes = fields[0::3]
            if _PROTOCOL_PREFIXES.keys() >= set(prefixes):
                return map(_PROTOCOL_PREFIXES.__getitem__, prefixes), fields[1::3], fields[2::3]
    split = list(map(split_real_address, column))
    protocols = [protocol or default_protocol for protocol, _, _ in split]
    return protocols, [host for _, host, _ in split], [port for _, _, port in split]


def _split_rows(lines: Sequence[str], sep: str, width: int, kind: str) -> list[list[str]] | None:
    """The columns of `lines`, or None unless every line has exactly `width` fields (and `kind` first).

    One split of the joined lines instead of one list per line: with the separator count of every line
    checked first, field k of row r is at r * width + k.
    """
    if not lines or set(map(methodcaller("count", sep), lines)) != {width - 1}:
        return None
    fields = sep.join(lines).split(sep)
    columns = [fields[i::width] for i in range(width)]
    if kind and columns[0].count(kind) != len(lines):
        return None
    return columns


class _Rows:
    """The rows of one type, collected column by column in order, whether they come one by one or as blocks."""

    def __init__(self, width: int) -> None:
        self._columns: list[list[Any]] = [[] for _ in range(width)]
        self._pending: list[tuple[Any, ...]] = []

    def add_row(self, row: tuple[Any, ...]) -> None:
        self._pending.append(row)

    def add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._pending += rows

    def add_columns(self, columns: Sequence[Iterable[Any]]) -> None:
        self._flush()
        for column, values in zip(self._columns, columns, strict=True):
            column += values

    def __len__(self) -> int:
        return len(self._columns[0]) + len(self._pending)

    def columns(self) -> list[list[Any]]:
        self._flush()
        return self._columns

    def _flush(self) -> None:
        if self._pending:
            for column, values in zip(self._columns, zip(*self._pending, strict=True), strict=True):
                column += values
            self._pending = []


def _shared(column: Iterable[str], memo: dict[str, str]) -> list[str]:
    """One string object per distinct value (UNDEF, cipher names, equal times) instead of one per row."""
    return list(map(memo.setdefault, column, column))


def _shared_times(column: Sequence[str], memo: dict[str, str]) -> list[str]:
    return _shared(_times(column), memo)


def parse_status(data: bytes | str, default_protocol: str = "", previous: Snapshot | None = None) -> Snapshot:
    """Parse one complete status text. `default_protocol` labels sessions whose address has no prefix.

    `previous`, the last snapshot of the same source, lets a rewrite that changed only the byte counters
    share its other columns; the result is the same as without it.
    """
    try:
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        return _parse(text, default_protocol, previous.session_table if previous is not None else None)
    except StatusParseError:
        raise
    except Exception as exc:  # the promise: nothing but StatusParseError escapes, whatever the input
        raise StatusParseError("malformed", f"unparseable status text ({type(exc).__name__})") from exc


def _parse(text: str, default_protocol: str, previous: SessionTable | None) -> Snapshot:
    if not text or text.isspace():  # not text.strip(), which copies the whole text
        raise StatusParseError("empty", "status text is empty")
    if "\x00" in text:
        raise StatusParseError("malformed", "status text contains NUL bytes: not an OpenVPN status file")
    if "\r" not in text and text.startswith(("TITLE\t", "TITLE,", "TIME\t", "TIME,", "HEADER\t", "HEADER,")):
        fast = _parse_text(text, default_protocol, previous)
        if fast is not None:
            return fast
    if "\r" not in text and text.startswith("OpenVPN CLIENT LIST\n"):
        fast = _parse_v1_text(text, default_protocol, previous)
        if fast is not None:
            return fast
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
    return _parse_v2v3(body, separator, 3 if separator == "\t" else 2, default_protocol, text)


def _parse_text(text: str, default_protocol: str, previous: SessionTable | None) -> Snapshot | None:
    """Status-version 2/3 without a list of all lines; None leaves the text to the line-based code.

    The torn-read checks come first, as there, with the same answers: the last non-empty line is the
    only END.
    """
    last = _end_line(text)
    if last == 0:
        return None
    token = next(t for t in ("TITLE", "TIME", "HEADER") if text.startswith(t))
    sep = text[len(token)]
    parser = _parse_v2v3_text(text, last - 1, sep, default_protocol, previous)
    if parser is None:
        return None
    return parser.snapshot(3 if sep == "\t" else 2)


def _end_line(text: str) -> int:
    """Where the last non-empty line starts, once it is known to be the only END: the torn-read checks of
    the line-based code, with the same answers, without a list of all lines."""
    end = len(text)
    while text.endswith("\n", 0, end):
        end -= 1
    last = text.rfind("\n", 0, end) + 1
    if text[last:end] != "END":
        raise TornStatusError("torn", "status text does not end with END (caught mid-rewrite)")
    if text.find("\nEND\n", 0, last) >= 0:
        raise TornStatusError("torn", "status text has content after END (caught mid-rewrite)")
    return last


_V1_ROUTING = "\nROUTING TABLE\n"
_V1_STATS = "\nGLOBAL STATS\n"


def _parse_v1_text(text: str, default_protocol: str, previous: SessionTable | None) -> Snapshot | None:
    """Status-version 1 without a list of all lines: the client rows as one text block (see
    _SessionBuilder.build_text_block), the routes validated now and built when first read, the virtual
    addresses joined from them when first read. None leaves anything unusual to the line-based code,
    which then answers exactly as it always has.
    """
    last = _end_line(text)
    body_end = last - 1  # the newline before END
    updated_at = text.find("\n") + 1
    header_at = text.find("\n", updated_at) + 1
    header_end = text.find("\n", header_at)
    if not 0 < updated_at < header_at <= header_end < body_end or not text.startswith("Updated,", updated_at):
        return None
    routing = text.find(_V1_ROUTING)
    stats = text.find(_V1_STATS)
    if routing <= header_end or routing + len(_V1_ROUTING) - 1 > body_end:
        return None  # no client rows (a small file), or no ROUTING TABLE where the line-based code wants it
    if stats < 0:
        stats = body_end
    elif stats < routing:
        return None
    builder = _SessionBuilder(text[header_at:header_end].split(","), default_protocol, previous)
    # Routes: header line and rows between ROUTING TABLE and GLOBAL STATS (or END).
    route_header_at = routing + len(_V1_ROUTING)
    route_table: RouteTable = EMPTY_ROUTES
    if route_header_at <= stats:
        route_header_end = text.find("\n", route_header_at)
        route_header = text[route_header_at:route_header_end].split(",")
        index = _columns(route_header, _ROUTE_REQUIRED, "routing table")
        width = len(route_header)
        if route_header_end < stats:
            block = text[route_header_end + 1 : stats]
            count = text.count("\n", route_header_end + 1, stats) + 1
            if _routes_valid(text, route_header_end + 1, stats, count, index, width, ",", ""):
                route_table = _lazy_routes(block, count, ",", index, width, "")
            else:  # a common name with a comma: the line-based repair, now
                route_table = RouteTable(_v1_routes(block.split("\n"), index, width).columns())
    routes_of = route_table

    def virtual(real: Sequence[str]) -> tuple[list[str], list[str]]:
        return _virtual_addresses(routes_of.virtual_address, routes_of.real_address, real)

    count = text.count("\n", header_end + 1, routing) + 1
    try:
        sessions = builder.build_text_block(text, header_end + 1, routing, ",", "", count, virtual)
    except (ValueError, IndexError):
        return None
    if sessions is None:
        return None
    table: SessionTable = sessions
    if table is not builder.reused:  # the previous parse checked those
        _check_unique_connections(table)
    updated = text[updated_at + len("Updated,") : header_at - 1]
    stats_at = stats + len(_V1_STATS)  # past the body's end when GLOBAL STATS is its last line, or absent
    stats_lines = text[stats_at:body_end].split("\n") if stats_at <= body_end else []
    return _v1_snapshot(normalise_time(updated) or updated, table, route_table, stats_lines, 0)


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

    def __init__(self, header: list[str], default_protocol: str, previous: SessionTable | None = None) -> None:
        self.index = _columns(header, _CLIENT_REQUIRED, "client list")
        self.key = (tuple(header), default_protocol)  # what the raw columns of a table mean
        self.previous = previous
        self.reused: LazySessionTable | None = None  # the table built by sharing the previous one's columns
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
        # The columns the validator requires to be counts (non-empty digits).
        self.counted = [self.index[n] for n in _COUNTED if n in self.index]
        self.memo: dict[str, str] = {}  # shared string objects for the low-cardinality columns

    def build_block(self, lines: Sequence[str], sep: str, kind: str) -> _Rows | None:
        """Session columns for rows that all have the header's width and valid values; None hands the
        block back.

        `kind` is the line-type column: "CLIENT_LIST" in v2/v3, "" in v1.
        """
        offset = 1 if kind else 0
        sessions = _Rows(_SESSION_WIDTH)
        for start in range(0, len(lines), _BLOCK):
            columns = _split_rows(lines[start : start + _BLOCK], sep, self.width + offset, kind)
            if columns is None:
                return None
            built = self._from_columns(columns[offset:])
            if built is None:
                return None
            sessions.add_columns(built)
        return sessions

    def build_text_block(
        self,
        text: str,
        start: int,
        end: int,
        sep: str,
        kind: str,
        count: int,
        virtual: Callable[[Sequence[str]], tuple[list[str], list[str]]] | None = None,
    ) -> SessionTable | None:
        """The session table of the `count` lines of text[start:end], each known to start with `kind` and
        the separator; None hands the block back. No list of lines: each chunk of about _BLOCK_CHARS is
        split into its fields at once. Every column is validated here; the ones /metrics does not read
        are built on first use (see _lazy_table).

        `kind` is "" for status-version 1, whose rows have no type column; `virtual` then gives the virtual
        addresses of the rows' real addresses (status-version 1 lists them in the routing table only).
        """
        offset = 1 if kind else 0
        width = self.width + offset
        total = count
        parts: list[list[str]] = [[] for _ in range(self.width)]  # per column: each chunk's values, joined
        while start < end:
            stop = text.find("\n", min(start + _BLOCK_CHARS, end), end) if start + _BLOCK_CHARS < end else -1
            if stop < 0:
                stop = end
            chunk = text[start:stop]
            # Without a type column, each line's separator count says that it has `width` fields.
            if not kind and set(map(methodcaller("count", sep), chunk.split("\n"))) != {width - 1}:
                return None
            fields = chunk.replace("\n", sep).split(sep)
            rows, rest = divmod(len(fields), width)
            # With one: every line starts with `kind` (the caller counted them). If every width-th field
            # is `kind` and `kind` occurs nowhere else (a substring search, cheaper than comparing every
            # field), each line start is one of those fields, so a chunk has at most `rows` lines; the
            # rows of all chunks add up to the caller's count of lines (checked below), so each chunk
            # has exactly `rows` lines and each line exactly `width` fields. A field that merely
            # contains `kind` hands the block back.
            if rest or (kind and (chunk.count(kind) != rows or fields[0::width].count(kind) != rows)):
                return None
            del chunk
            columns = [fields[i::width] for i in range(offset, width)]
            del fields
            # Each column joined once, while its strings are still in the cache: the validation, the
            # table and the comparison with the previous parse all read these. The strings themselves
            # go with the chunk, so the next chunk reuses their memory.
            joined = list(map("\n".join, columns))
            if not self._valid_columns(columns, joined):
                return None
            del columns
            for column_parts, part in zip(parts, joined, strict=True):
                column_parts.append(part)
            count -= rows
            start = stop + 1
        if count != 0 or not parts[0]:
            return None
        return self._lazy_table(total, list(map("\n".join, parts)), virtual)

    def _valid_columns(self, columns: list[list[str]], joined: list[str]) -> bool:
        """What _from_columns checks before it builds: counts are digits, real addresses plausible.
        `joined` holds each column's values joined by newlines."""
        for i in self.counted:
            if not all(columns[i]) or not joined[i].replace("\n", "").isdigit():
                return False
        real = joined[self.i_real]
        return all(columns[self.i_real]) and " " not in real and "," not in real

    def _lazy_table(
        self,
        count: int,
        joined: list[str],
        virtual: Callable[[Sequence[str]], tuple[list[str], list[str]]] | None = None,
    ) -> SessionTable:
        """The table _from_columns would build from `count` validated rows, given as each column's values
        joined by newlines. The snapshot keeps that text, not a string per value: every column is built
        from it on first use. A builder runs only what cannot fail on validated input; whatever could
        (int() of a non-ASCII digit, say) is done now, so errors still surface during the parse.
        """
        # The counters stay text when the file wrote them as str() would (ASCII, no leading zero): the
        # views print that text as it is, and the integers are built only for whoever reads them.
        texts: dict[str, str] = {}
        counters: dict[str, Sequence[int] | Callable[[], Iterable[int]]] = {}
        counter_columns = (self.i_rx, self.i_tx)
        for name, i in zip(("bytes_received", "bytes_sent"), counter_columns, strict=True):
            text = joined[i]  # validated: non-empty digits, one value a line
            if _canonical_counts(text):
                texts[name] = text
                counters[name] = partial(_ints, text)
            else:
                counters[name] = list(map(int, text.split("\n")))  # int() may refuse: fail now, not later
        # Everything but the counters, in one string: equal to the previous parse's, this text differs
        # from that one only in the counters. Chunk boundaries move as counters grow; column by column
        # they do not. The same string is where the columns are built from.
        kept = [i for i in range(self.width) if i not in counter_columns]
        identity = "\x00".join([joined[i] for i in kept])
        origin = (self.key, count, identity)
        previous = self.previous
        spans: dict[int, tuple[int, int]] = {}
        at = 0
        for i in kept:
            spans[i] = (at, at + len(joined[i]))
            at += len(joined[i]) + 1

        def values(i: int) -> list[str]:
            first, last = spans[i]
            return identity[first:last].split("\n")

        # The builders below close over locals only, never over `self`: the builder refers to the previous
        # table, and a table whose builders led back to it would keep every earlier parse alive.
        i_real, i_cn = self.i_real, self.i_cn
        self.previous = None
        replaced: dict[str, Iterable[Any] | Callable[[], Iterable[Any]]] = dict(counters)
        if virtual is not None:  # from this parse's routes, which may have changed where the rows did not
            join = virtual
            found: list[tuple[list[str], list[str]]] = []

            def addresses_of(family: int) -> list[str]:
                if not found:
                    found.append(join(values(i_real)))
                return found[0][family]

            replaced["virtual_address"] = partial(addresses_of, 0)
            replaced["virtual_ipv6_address"] = partial(addresses_of, 1)
        if isinstance(previous, LazySessionTable) and previous.origin == origin:
            self.reused = previous.sharing(replaced, texts, previous.origin)
            return self.reused
        real_text = joined[self.i_real]
        since_ascii = self.i_since is None or joined[self.i_since].isascii()
        epochs_ascii = self.i_since_t is None or joined[self.i_since_t].isascii()
        del joined
        blank = ("",) * count
        memo = self.memo
        default = self.default_protocol

        def column(i: int | None) -> Sequence[str] | Callable[[], Iterable[str]]:
            return partial(values, i) if i is not None else blank

        split: list[tuple[list[str], list[str], list[str]]] = []

        def addresses() -> tuple[list[str], list[str], list[str]]:
            if not split:
                protocols, hosts, ports = _split_addresses(values(i_real), default)
                split.append((list(protocols), list(hosts), list(ports)))
            return split[0]

        # Only an address that starts with "udp" or "tcp" can carry a protocol prefix: without one,
        # every row has the default protocol and no address needs splitting yet.
        protocol: Sequence[str] | Callable[[], Iterable[str]]
        if real_text.startswith(("udp", "tcp")) or "\nudp" in real_text or "\ntcp" in real_text:
            protocol = addresses()[0]
        else:
            protocol = (default,) * count
        del real_text

        def shared(i: int) -> list[str]:
            return _shared(values(i), memo)

        def times(i: int) -> list[str]:
            return _shared_times(values(i), memo)

        since: Sequence[str] | Callable[[], Iterable[str]] = blank
        if self.i_since is not None:
            # normalise_time may raise on what is not ASCII: fail now, not later
            since = partial(times, self.i_since) if since_ascii else times(self.i_since)
        epochs: Sequence[int | None] | Callable[[], Iterable[int | None]] = (None,) * count
        if self.i_since_t is not None:
            epoch_text = values(self.i_since_t) if not epochs_ascii else None
            # validated digits; int() may refuse a non-ASCII digit: fail now, not later
            epochs = list(map(int, epoch_text)) if epoch_text is not None else partial(_ints_at, values, self.i_since_t)
        user = partial(shared, self.i_user) if self.i_user is not None else blank
        cipher = partial(shared, self.i_cipher) if self.i_cipher is not None else blank

        def names() -> list[str]:
            found = values(i_cn)
            if HANDSHAKE_CN in found:  # one string object for every row still in the handshake
                found = [HANDSHAKE_CN if name == HANDSHAKE_CN else name for name in found]
            return found

        columns: dict[str, Iterable[Any] | Callable[[], Iterable[Any]]] = {
            "common_name": names,
            "real_address": partial(values, self.i_real),
            "remote_host": lambda: addresses()[1],
            "remote_port": lambda: addresses()[2],
            "protocol": protocol,
            "virtual_address": column(self.i_v4),
            "virtual_ipv6_address": column(self.i_v6),
            "connected_since": since,
            "connected_since_epoch": epochs,
            "username": user,
            "client_id": column(self.i_cid),
            "peer_id": column(self.i_pid),
            "cipher": cipher,
        }
        columns.update(replaced)
        return LazySessionTable(count, columns, texts, origin)

    def _from_columns(self, columns: list[list[str]]) -> list[list[Any]] | None:
        """The Session columns (in field order) of one block of split rows, or None to hand it back."""
        if not all(_all_counts(columns[i]) for i in self.counted):
            return None
        real = columns[self.i_real]
        joined = "".join(real)
        if not all(real) or " " in joined or "," in joined:
            return None
        count = len(real)

        def column(i: int | None) -> Iterable[str]:
            return columns[i] if i is not None else repeat("", count)

        protocols, hosts, ports = _split_addresses(real, self.default_protocol)
        v4, v6 = column(self.i_v4), column(self.i_v6)
        since = _times(columns[self.i_since]) if self.i_since is not None else repeat("", count)
        since_t: Iterable[int | None] = (
            map(int, columns[self.i_since_t]) if self.i_since_t is not None else repeat(None, count)
        )
        # Username, cipher and connect times take few distinct values: one string object per value.
        memo = self.memo
        user = _shared(columns[self.i_user], memo) if self.i_user is not None else repeat("", count)
        cipher = _shared(columns[self.i_cipher], memo) if self.i_cipher is not None else repeat("", count)
        names = columns[self.i_cn]
        if HANDSHAKE_CN in names:
            names = [HANDSHAKE_CN if name == HANDSHAKE_CN else name for name in names]
        built: list[list[Any]] = [
            names,
            real,
            list(hosts),
            list(ports),
            list(protocols),
            list(v4),
            list(v6),
            list(map(int, columns[self.i_rx])),
            list(map(int, columns[self.i_tx])),
            _shared(since, memo),
            list(since_t),
            list(user),
            list(column(self.i_cid)),
            list(column(self.i_pid)),
            list(cipher),
        ]
        if len(set(map(len, built))) != 1:
            return None
        return built

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


def _build_route_block(lines: Sequence[str], sep: str, index: dict[str, int], width: int, kind: str) -> _Rows | None:
    """Route columns for rows that all have the header's width and valid values; None hands the block back."""
    offset = 1 if kind else 0
    routes = _Rows(_ROUTE_WIDTH)
    for start in range(0, len(lines), _BLOCK):
        columns = _split_rows(lines[start : start + _BLOCK], sep, width + offset, kind)
        if columns is None:
            return None
        count = len(columns[0])
        epochs: Iterable[int | None] = repeat(None, count)
        if "Last Ref (time_t)" in index:
            column = columns[index["Last Ref (time_t)"] + offset]
            if not _all_counts(column):
                return None  # empty values are allowed: the line-by-line code sorts them out
            epochs = map(int, column)
        last_ref = _times(columns[index["Last Ref"] + offset]) if "Last Ref" in index else repeat("", count)
        built: list[list[Any]] = [
            columns[index["Virtual Address"] + offset],
            columns[index["Common Name"] + offset],
            columns[index["Real Address"] + offset],
            list(last_ref),
            list(epochs),
        ]
        if len(set(map(len, built))) != 1:
            return None
        routes.add_columns(built)
    return routes


def _routes_valid(
    text: str, start: int, end: int, count: int, index: dict[str, int], width: int, sep: str, kind: str
) -> bool:
    """Whether the `count` lines of text[start:end] (text[end] is their last newline) are route lines the
    block builder takes as they are: `kind` first (if any), exactly `width` fields, an ASCII-digit (or
    empty) Last Ref (time_t). One separator count and one regex scan, a quarter of building them.

    The regex lets a field hold anything but the separator, newlines included: a negated single
    character is scanned several times faster than a negated pair. With exactly as many separators
    in the text as `count` well-formed lines hold, no line can have borrowed from another, so each
    field the regex matched lies within one line.
    """
    per_line = width - 1 + (1 if kind else 0)
    if text.count(sep, start, end) != per_line * count:
        return False
    pattern = _route_pattern(tuple(sorted(index.items())), width, sep, kind)
    return pattern.fullmatch(text, start, end + 1) is not None


@functools.lru_cache(maxsize=16)
def _route_pattern(index_items: tuple[tuple[str, int], ...], width: int, sep: str, kind: str) -> re.Pattern[str]:
    epoch = dict(index_items).get("Last Ref (time_t)")
    field_ = f"[^{re.escape(sep)}]*+"
    last = f"[^{re.escape(sep)}\\n]*+"  # the last field runs up to the newline, which it must not take
    fields = [("[0-9]*+" if i == epoch else field_ if i < width - 1 else last) for i in range(width)]
    line = (re.escape(kind + sep) if kind else "") + re.escape(sep).join(fields) + "\\n"
    return re.compile(f"(?>{line})*+")


def _lazy_routes(block: str, count: int, sep: str, index: dict[str, int], width: int, kind: str) -> RouteTable:
    """The routes of `block` (lines the route pattern matched), built when something first reads them."""

    def build() -> list[list[Any]]:
        lines = block.split("\n")
        routes: _Rows | None = None
        try:
            routes = _build_route_block(lines, sep, index, width, kind)
        except (ValueError, IndexError):
            routes = None
        if routes is None:
            routes = _Rows(_ROUTE_WIDTH)
            offset = 1 if kind else 0
            routes.add_rows(_build_route(line.split(sep)[offset:], index, width, sep == ",") for line in lines)
        return routes.columns()

    return LazyRouteTable(count, build)


def _check_unique_connections(sessions: SessionTable) -> None:
    """Two rows for one connection mean old and new content were mixed by a torn read."""
    ids = list(filter(None, sessions.client_id))
    if len(ids) != len(set(ids)):
        raise StatusParseError("malformed", "a Client ID appears twice (mixed old and new content)")
    if not ids:
        real_addresses = sessions.real_address
        if len(set(real_addresses)) == len(real_addresses):
            return  # no address twice at all: the rows with a port, a subset, cannot have one twice either
        addresses = [real for real, port in zip(real_addresses, sessions.remote_port, strict=True) if port]
        if len(addresses) != len(set(addresses)):
            raise StatusParseError("malformed", "a Real Address appears twice (mixed old and new content)")


def _tables(sessions: _Rows, routes: _Rows) -> tuple[SessionTable, RouteTable]:
    # Routes keep their own Common Name and Real Address strings: pointing them at the sessions' strings
    # saves ~13 MB at 100,000 clients but hashing 200,000 fresh strings costs a quarter of the parse.
    return SessionTable(sessions.columns()), RouteTable(routes.columns())


def _unknown_line(line: str, separator: str) -> None:
    """Skip a line of a type this parser does not know, unless it is the seam of a torn read."""
    token = line.split(separator, 1)[0]
    if line.startswith(("HEADER,ERRORS", "ERRORS,")):
        return  # debug builds print these comma-separated even in status-version 3
    if token in _FRAGMENTS or not token or not (token[0].isupper() and token.replace("_", "").isalnum()):
        raise StatusParseError("malformed", "a line starts mid-record (torn read)")


class _V23Parser:
    """status-version 2/3: the line-by-line state machine, plus whole blocks of rows at once."""

    def __init__(self, sep: str, default_protocol: str, previous: SessionTable | None = None) -> None:
        self.sep = sep
        self.comma = sep == ","
        self.default_protocol = default_protocol
        self.previous = previous
        self.title = self.updated_text = ""
        self.updated_epoch: int | None = None
        self.sessions = _Rows(_SESSION_WIDTH)
        self.routes = _Rows(_ROUTE_WIDTH)
        self.global_stats: list[tuple[str, str]] = []
        self.builder: _SessionBuilder | None = None
        self.route_index: dict[str, int] | None = None
        self.route_width = 0
        self.lazy_routes: RouteTable | None = None
        self.lazy_sessions: SessionTable | None = None  # the client rows, when they came as one text block
        self.skipped = 0
        self.section = 0  # 0 preamble, 1 client list, 2 routing table, 3 global stats: OpenVPN prints them in order

    def _take_lazy_sessions(self) -> None:
        """More client rows follow a text block: keep the order by building the block's rows first."""
        if self.lazy_sessions is not None:
            self.sessions.add_columns(self.lazy_sessions.columns())
            self.lazy_sessions = None

    def feed(self, line: str) -> None:
        sep = self.sep
        kind, _, rest = line.partition(sep)
        if kind == "CLIENT_LIST":
            if self.section != 1 or self.builder is None:
                raise StatusParseError("malformed", "CLIENT_LIST row outside the client list")
            self._take_lazy_sessions()
            session = self.builder.build(rest.split(sep), self.comma)
            if session is None:
                self.skipped += 1
            else:
                self.sessions.add_row(session)
        elif kind == "ROUTING_TABLE":
            if self.section != 2 or self.route_index is None:
                raise StatusParseError("malformed", "ROUTING_TABLE row outside the routing table")
            self.routes.add_row(_build_route(rest.split(sep), self.route_index, self.route_width, self.comma))
        elif kind == "HEADER":
            header = rest.split(sep)
            if header[0] == "CLIENT_LIST" and self.section == 0:
                self.builder = _SessionBuilder(header[1:], self.default_protocol, self.previous)
                self.section = 1
            elif header[0] == "ROUTING_TABLE" and self.section == 1:
                self.route_index = _columns(header[1:], _ROUTE_REQUIRED, "routing table")
                self.route_width = len(header) - 1
                self.section = 2
            elif header[0] in ("CLIENT_LIST", "ROUTING_TABLE"):
                raise StatusParseError("malformed", f"HEADER {header[0]} out of order")
            else:
                self.skipped += 1
        elif kind == "GLOBAL_STATS":
            if self.section < 2:
                raise StatusParseError("malformed", "GLOBAL_STATS before the routing table")
            self.section = 3
            name, _, value = rest.partition(sep)
            self.global_stats.append((name, value))
        elif kind == "TITLE":
            if self.section != 0 or self.title:
                raise StatusParseError("malformed", "TITLE out of place")
            self.title = rest
        elif kind == "TIME":
            if self.section != 0 or self.updated_text:
                raise StatusParseError("malformed", "TIME out of place")
            text, _, epoch = rest.rpartition(sep)
            self.updated_text, self.updated_epoch = normalise_time(text) or text, _epoch(epoch)
        else:
            _unknown_line(line, sep)
            self.skipped += 1

    def client_block(self, lines: Sequence[str]) -> bool:
        """Rows that feed() would turn into sessions without a skip or an error; False if not sure."""
        if self.section != 1 or self.builder is None:
            return False
        sessions = self.builder.build_block(lines, self.sep, "CLIENT_LIST")
        if sessions is None:
            return False
        self._take_lazy_sessions()
        self.sessions.add_columns(sessions.columns())
        return True

    def route_block(self, lines: Sequence[str]) -> bool:
        if self.section != 2 or self.route_index is None:
            return False
        routes = _build_route_block(lines, self.sep, self.route_index, self.route_width, "ROUTING_TABLE")
        if routes is None:
            return False
        self.routes.add_columns(routes.columns())
        return True

    def client_text_block(self, text: str, start: int, end: int, count: int) -> bool:
        """client_block() for the `count` lines of text[start:end], without splitting them into lines."""
        if self.section != 1 or self.builder is None:
            return False
        table = self.builder.build_text_block(text, start, end, self.sep, "CLIENT_LIST", count)
        if table is None:
            return False
        if self.lazy_sessions is None and not len(self.sessions):
            self.lazy_sessions = table
        else:
            self._take_lazy_sessions()
            self.sessions.add_columns(table.columns())
        return True

    def route_text_block(self, text: str, start: int, end: int, count: int) -> bool:
        """route_block() for the `count` lines of text[start:end]: validated now, built when first read."""
        if self.section != 2 or self.route_index is None or self.lazy_routes is not None:
            return False
        kind = "ROUTING_TABLE"
        if not _routes_valid(text, start, end, count, self.route_index, self.route_width, self.sep, kind):
            return False
        self.lazy_routes = _lazy_routes(text[start:end], count, self.sep, self.route_index, self.route_width, kind)
        return True

    def snapshot(self, status_version: int) -> Snapshot:
        if self.section < 2:
            raise StatusParseError("malformed", "status text lacks the client list or routing table header")
        sessions, routes = _tables(self.sessions, self.routes)
        if self.lazy_sessions is not None:  # then no client row came any other way (_take_lazy_sessions)
            sessions = self.lazy_sessions
        if self.lazy_routes is not None:
            routes = self.lazy_routes
        if self.builder is None or sessions is not self.builder.reused:  # the previous parse checked those
            _check_unique_connections(sessions)
        product, version = _product_version(self.title)
        return Snapshot(
            kind="server",
            status_version=status_version,
            product=product,
            version=version,
            title=self.title,
            updated_text=self.updated_text,
            updated_epoch=self.updated_epoch,
            session_table=sessions,
            route_table=routes,
            global_stats=tuple(self.global_stats),
            client_stats=(),
            skipped_lines=self.skipped,
        )


def _parse_v2v3(body: list[str], sep: str, status_version: int, default_protocol: str, text: str = "") -> Snapshot:
    parser = _parse_v2v3_blocks(body, sep, default_protocol, text) if text else None
    if parser is None:
        parser = _V23Parser(sep, default_protocol)
        for line in body:
            parser.feed(line)
    return parser.snapshot(status_version)


def _parse_v2v3_blocks(body: list[str], sep: str, default_protocol: str, text: str) -> _V23Parser | None:
    """Feed the few other lines one by one, the client and route rows as two blocks.

    `text` counts the rows of each type: when they do not form one contiguous block each, or a block
    holds anything the line-by-line code would skip, recover or reject, the answer is None and the
    caller parses line by line (which then reports exactly what it always has).
    """
    parser = _V23Parser(sep, default_protocol)
    at = 0
    for kind, block in (("CLIENT_LIST", parser.client_block), ("ROUTING_TABLE", parser.route_block)):
        prefix = kind + sep
        count = text.count("\n" + prefix)
        if not count:
            continue
        while at < len(body) and not body[at].startswith(prefix):
            parser.feed(body[at])
            at += 1
        try:
            if not block(body[at : at + count]):
                return None
        except (ValueError, IndexError):
            return None  # e.g. a digit int() does not take: the line-by-line code says what it always has
        at += count
    for line in body[at:]:
        parser.feed(line)
    return parser


def _parse_v2v3_text(
    text: str, end: int, sep: str, default_protocol: str, previous: SessionTable | None
) -> _V23Parser | None:
    """_parse_v2v3_blocks() straight from the text: the body lines are text[:end], text[end] is the newline
    before END (no CR anywhere).

    The client rows are split chunk by chunk into fields and the route rows only validated, so that no
    list of all lines is ever built. None when the blocks are not what the fast path takes; the caller
    then parses as before, which reports exactly what it always has.
    """
    parser = _V23Parser(sep, default_protocol, previous)
    at = 0  # start of the next line not yet consumed

    def feed_until(stop: int) -> None:
        # The lines from `at` up to the newline at `stop`; stop == at - 1 means there are none.
        if stop >= at:
            for line in text[at:stop].split("\n"):
                parser.feed(line)

    for kind, block in (("CLIENT_LIST", parser.client_text_block), ("ROUTING_TABLE", parser.route_text_block)):
        marker = "\n" + kind + sep
        count = text.count(marker, 0, end)
        if not count:
            continue
        first = text.find(marker, max(at - 1, 0), end)
        if first < 0:
            return None
        last = text.rfind(marker, first, end)
        block_end = text.find("\n", last + 1, end + 1)
        if block_end < 0 or text.count("\n", first + 1, block_end) + 1 != count:
            return None  # the rows of this type are not one contiguous block
        feed_until(first)
        at = first + 1
        try:
            if not block(text, at, block_end, count):
                return None
        except (ValueError, IndexError):
            return None
        at = block_end + 1
    feed_until(end)
    return parser


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
    client_lines = body[3:routing_at]
    sessions: _Rows | None = None
    skipped = 0
    if client_lines:
        try:
            sessions = builder.build_block(client_lines, ",", "")
        except (ValueError, IndexError):
            sessions = None
    if sessions is None:
        sessions, skipped = _v1_sessions(builder, client_lines)

    routes = _Rows(_ROUTE_WIDTH)
    if routing_at + 1 < stats_at:
        route_header = body[routing_at + 1].split(",")
        route_index = _columns(route_header, _ROUTE_REQUIRED, "routing table")
        routes = _v1_routes(body[routing_at + 2 : stats_at], route_index, len(route_header))
    _join_virtual_addresses(sessions, routes)
    session_table, route_table = _tables(sessions, routes)
    _check_unique_connections(session_table)
    return _v1_snapshot(updated_text, session_table, route_table, body[stats_at + 1 :], skipped)


def _v1_routes(lines: list[str], index: dict[str, int], width: int) -> _Rows:
    """status-version 1 routes, built now: as a block when every row has the header's width, else row by
    row, where a common name with commas is repaired."""
    try:
        routes = _build_route_block(lines, ",", index, width, "")
    except (ValueError, IndexError):
        routes = None
    if routes is None:
        routes = _Rows(_ROUTE_WIDTH)
        routes.add_rows(_build_route(line.split(","), index, width, True) for line in lines)
    return routes


def _v1_snapshot(
    updated_text: str, sessions: SessionTable, routes: RouteTable, stats_lines: list[str], skipped: int
) -> Snapshot:
    return Snapshot(
        kind="server",
        status_version=1,
        product="OpenVPN",
        version="",
        title="",
        updated_text=updated_text,
        updated_epoch=None,
        session_table=sessions,
        route_table=routes,
        global_stats=tuple((name, value) for name, _, value in (line.rpartition(",") for line in stats_lines)),
        client_stats=(),
        skipped_lines=skipped,
    )


def _v1_sessions(builder: _SessionBuilder, lines: list[str]) -> tuple[_Rows, int]:
    sessions = _Rows(_SESSION_WIDTH)
    skipped = 0
    for line in lines:
        session = builder.build(line.split(","), comma_separated=True)
        if session is None:
            skipped += 1
        else:
            sessions.add_row(session)
    return sessions, skipped


def _join_virtual_addresses(sessions: _Rows, routes: _Rows) -> None:
    """v1 has no virtual address column: take it from the routes, keyed by the connection's Real Address."""
    if not len(sessions):
        return
    route_columns = routes.columns()
    columns = sessions.columns()
    # Route fields 0 and 2, Session fields 1, 5 and 6: real, virtual and virtual IPv6 address.
    columns[5], columns[6] = _virtual_addresses(route_columns[0], route_columns[2], columns[1])


def _virtual_addresses(
    route_virtual: Sequence[str], route_real: Sequence[str], real: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The IPv4 and IPv6 virtual address of each Real Address in `real`, from the routes.

    A client may own several routes (IPv4, IPv6, iroutes like 10.1.0.0/24, cached `C` entries, MACs in
    TAP mode): the host address of each family is its virtual address.
    """
    v4: dict[str, str] = {}
    v6: dict[str, str] = {}
    for address, real_address in zip(route_virtual, route_real, strict=True):
        if "/" in address or address.endswith("C") or "@" in address:
            continue
        if address.count(".") == 3 and ":" not in address:
            v4.setdefault(real_address, address)
        elif ":" in address and address.count(":") != 5:  # five colons: a MAC, not IPv6
            v6.setdefault(real_address, address)
    return [v4.get(r, "") for r in real], [v6.get(r, "") for r in real]


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
        session_table=EMPTY_SESSIONS,
        route_table=EMPTY_ROUTES,
        global_stats=(),
        client_stats=tuple(stats),
        skipped_lines=0,
    )
