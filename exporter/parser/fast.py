"""The fast parser: the usual server status texts, column by column, or None (it declines).

It returns exactly the Snapshot the reference parser (reference.py) returns for the same text, or declines
whenever anything about the text is unusual: a missing section, an unknown line, a row of the wrong width,
a value the reference would reject or repair. tests/unit/test_parser_differential.py holds it to that.

How it is fast, at 10,000 to 100,000 sessions:
- No list of lines: the client rows are split chunk by chunk (about 1,000 rows) into their fields with
  C-level str methods, each column joined once into one newline-separated string and validated there.
- The snapshot keeps that text: a column becomes a tuple when something reads it (LazySessionTable), and the
  columns of per-session strings are split from it again at every read rather than kept (model.Rebuilt);
  /metrics reads names, protocols and the counters, which stay text when the file wrote them as str() would.
- Routes are only validated (one separator count and one regex scan) and built when first read.
- A rewrite that changed only the byte counters shares the previous snapshot's other columns, built or not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property, partial
from itertools import repeat
from operator import methodcaller
from typing import Any, NamedTuple

from exporter.model import (
    EMPTY_ROUTES,
    LazyRouteTable,
    LazySessionTable,
    Rebuilt,
    RouteTable,
    SessionTable,
    Snapshot,
)
from exporter.parser.common import (
    PROTOCOL_PREFIXES,
    V1_ROUTING,
    V1_STATS,
    ClientLayout,
    Format,
    RouteLayout,
    client_layout,
    epoch,
    is_count,
    mixed_rows,
    normalise_time,
    plausible_address,
    route_layout,
    server_snapshot,
    split_real_address,
    updated_text,
    v1_global_stats,
    virtual_addresses,
)

_ROWS = 4096  # route rows split at a time: bounds the transient lists of a 100,000-row file
_CHUNK_CHARS = 1 << 17  # client text split into fields at a time: about 1,000 rows, still in the cache
# A column whose values are all "YYYY-MM-DD HH:MM:SS"-shaped is what normalise_time returns unchanged.
_NEW_STYLE_TIMES = re.compile(r"(?:[^\n]{4}-[^\n]{5} [^\n]{8}\n)*")
_LEADING_ZERO = re.compile(r"^0[0-9]", re.MULTILINE)
_count_colons = methodcaller("count", ":")

VirtualJoin = Callable[[Sequence[str]], tuple[list[str], list[str]]]


class _Block(NamedTuple):
    """`count` rows of one type: the lines of text[start:end]; text[end] is the newline after the last."""

    text: str
    start: int
    end: int
    rows: int
    sep: str
    kind: str  # the line-type column ("CLIENT_LIST", "ROUTING_TABLE"); "" in status-version 1, which has none


def parse_fast(
    text: str, form: Format, last: int, default_protocol: str, previous: SessionTable | None
) -> Snapshot | None:
    """The snapshot of a text that common.frame() accepted (`last`: where its END line starts), or None.
    `previous` is the last session table of the same source: columns that did not change are shared."""
    reusable = previous if isinstance(previous, LazySessionTable) else None
    if form == "v1":
        return _server_v1(text, last - 1, default_protocol, reusable)
    if form in ("v2", "v3"):
        return _server_v23(text, last - 1, "\t" if form == "v3" else ",", default_protocol, reusable)
    return None  # client mode: a dozen lines, the reference reads them


def _server_v23(
    text: str, body_end: int, sep: str, default_protocol: str, previous: LazySessionTable | None
) -> Snapshot | None:
    """TITLE, TIME, the client header, client rows, the route header, route rows, GLOBAL_STATS lines: the
    layout OpenVPN 2.3 to 2.7 write. `body_end` is the newline before END."""
    client_at = text.find("\nCLIENT_LIST" + sep, 0, body_end)
    preamble_text = text[:client_at] if client_at > 0 else ""
    preamble = preamble_text.split("\n") if preamble_text.isascii() else []
    client_head, route_head = "HEADER" + sep + "CLIENT_LIST" + sep, "\nHEADER" + sep + "ROUTING_TABLE" + sep
    if len(preamble) != 3 or not preamble[0].startswith("TITLE" + sep) or not preamble[1].startswith("TIME" + sep):
        return None
    header_at = text.find(route_head, client_at, body_end)
    if not preamble[2].startswith(client_head) or header_at < 0:
        return None
    header_end = text.find("\n", header_at + 1, body_end + 1)
    clients = client_layout(tuple(preamble[2][len(client_head) :].split(sep)))
    routing = route_layout(tuple(text[header_at + len(route_head) : header_end].split(sep)))
    stats_at = text.find("\nGLOBAL_STATS" + sep, header_end, body_end)
    stats_at = body_end if stats_at < 0 else stats_at
    stats = text[stats_at + 1 : body_end].split("\n") if stats_at < body_end else []
    client_rows = _rows_of(text, client_at, header_at, "CLIENT_LIST" + sep)
    route_rows = _rows_of(text, header_end, stats_at, "ROUTING_TABLE" + sep)
    if clients.missing or routing.missing or client_rows is None or route_rows is None:
        return None
    if not all(line.startswith("GLOBAL_STATS" + sep) for line in stats):
        return None
    block = _Block(text, client_at + 1, header_at, client_rows, sep, "CLIENT_LIST")
    routes = _routes(_Block(text, header_end + 1, stats_at, route_rows, sep, "ROUTING_TABLE"), routing)
    built = _client_table(block, clients, default_protocol, previous, None)
    if built is None or routes is None:
        return None
    table, reused = built
    if not reused and mixed_rows(table) is not None:  # the previous parse checked a reused table
        return None
    time_text, _, time_t = preamble[1][len("TIME") + 1 :].rpartition(sep)
    skip = len("GLOBAL_STATS") + 1
    global_stats = tuple((name, value) for name, _, value in (line[skip:].partition(sep) for line in stats))
    title = preamble[0][len("TITLE") + 1 :]
    return server_snapshot(
        2 if sep == "," else 3, title, (updated_text(time_text), epoch(time_t)), (table, routes), global_stats, 0
    )


def _rows_of(text: str, start: int, end: int, prefix: str) -> int | None:
    """How many lines follow the newline at `start` up to the one at `end`, when every one starts with
    `prefix`; else None."""
    rows = text.count("\n", start, end)
    return rows if text.count("\n" + prefix, start, end) == rows else None


def _server_v1(text: str, body_end: int, default_protocol: str, previous: LazySessionTable | None) -> Snapshot | None:
    """The title line, Updated, the client header and rows, ROUTING TABLE with its header and rows, and
    optionally GLOBAL STATS: with at least one client row and rows without commas in their names."""
    updated_at = text.find("\n") + 1
    header_at = text.find("\n", updated_at) + 1
    header_end = text.find("\n", header_at)
    if not 0 < updated_at < header_at <= header_end < body_end or not text.startswith("Updated,", updated_at):
        return None
    routing = text.find(V1_ROUTING)
    stats = text.find(V1_STATS)
    if routing <= header_end or routing + len(V1_ROUTING) - 1 > body_end or 0 <= stats < routing:
        return None  # no client rows (a small file), or no ROUTING TABLE where the reference wants it
    stats = body_end if stats < 0 else stats
    clients = client_layout(tuple(text[header_at:header_end].split(",")))
    routes = _v1_routes(text, routing + len(V1_ROUTING), stats)
    if clients.missing or routes is None:
        return None
    route_table = routes  # the virtual addresses of the rows come from the routes, when first read

    def virtual(real: Sequence[str]) -> tuple[list[str], list[str]]:
        return virtual_addresses(route_table.virtual_address, route_table.real_address, real)

    count = text.count("\n", header_end + 1, routing) + 1
    built = _client_table(
        _Block(text, header_end + 1, routing, count, ",", ""), clients, default_protocol, previous, virtual
    )
    if built is None:
        return None
    table, reused = built
    if not reused and mixed_rows(table) is not None:  # the previous parse checked a reused table
        return None
    updated = updated_text(text[updated_at + len("Updated,") : header_at - 1])
    stats_at = stats + len(V1_STATS)  # past the body's end when GLOBAL STATS is its last line, or absent
    stats_lines = text[stats_at:body_end].split("\n") if stats_at <= body_end else []
    return server_snapshot(1, "", (updated, None), (table, routes), v1_global_stats(stats_lines), 0)


def _v1_routes(text: str, header_at: int, stats: int) -> RouteTable | None:
    """The routing table of status-version 1: its header starts at `header_at`, its rows end at the
    newline at `stats`. No header, or a header without rows, is an empty table."""
    if header_at > stats:
        return EMPTY_ROUTES
    header_end = text.find("\n", header_at)
    layout = route_layout(tuple(text[header_at:header_end].split(",")))
    if layout.missing:
        return None
    if header_end >= stats:
        return EMPTY_ROUTES
    count = text.count("\n", header_end + 1, stats) + 1
    return _routes(_Block(text, header_end + 1, stats, count, ",", ""), layout)


# Client rows.


def _client_table(
    block: _Block,
    layout: ClientLayout,
    default_protocol: str,
    previous: LazySessionTable | None,
    virtual: VirtualJoin | None,
) -> tuple[SessionTable, bool] | None:
    """The session table of a block of client rows, and whether it shares the previous table's columns;
    None to decline. `virtual` gives status-version 1's virtual addresses, which its rows lack."""
    joined = _client_columns(block, layout)
    if joined is None:
        return None
    texts, counters = _counters(joined, layout)
    raw = _Raw(joined, layout, default_protocol, virtual)
    del joined
    # Everything but the counters, in one string: equal to the previous parse's, this text differs from that
    # one only in the counters, and every other column may be shared.
    origin = (layout.header, default_protocol, block.rows, raw.identity)
    replaced: dict[str, Iterable[Any] | Callable[[], Iterable[Any]] | Rebuilt] = dict(counters)
    if virtual is not None:  # from this parse's routes, which may have changed where the rows did not
        replaced["virtual_address"] = Rebuilt(partial(raw.virtual, 0))
        replaced["virtual_ipv6_address"] = Rebuilt(partial(raw.virtual, 1))
    if previous is not None and previous.origin == origin:  # keeps the previous text, this one is dropped
        return previous.sharing(replaced, texts, previous.origin), True
    columns = raw.columns(block.rows)
    columns.update(replaced)
    return LazySessionTable(block.rows, columns, texts, origin), False


def _client_columns(block: _Block, layout: ClientLayout) -> list[str] | None:
    """Each client column's values joined by newlines, every value checked as the reference checks it;
    None to decline. Each chunk of about _CHUNK_CHARS is split into its fields at once."""
    text, start, end, count, sep, kind = block
    offset = 1 if kind else 0
    width = layout.width + offset
    parts: list[list[str]] = [[] for _ in range(layout.width)]  # per column: each chunk's values, joined
    while start < end:
        stop = text.find("\n", start + _CHUNK_CHARS, end) if start + _CHUNK_CHARS < end else -1
        stop = end if stop < 0 else stop
        chunk = text[start:stop]
        # Without a type column, each line's separator count says that it has `width` fields.
        if not kind and set(map(methodcaller("count", sep), chunk.split("\n"))) != {width - 1}:
            return None
        fields = chunk.replace("\n", sep).split(sep)
        rows, rest = divmod(len(fields), width)
        # With one, every line starts with `kind` (the caller counted them). If every width-th field is
        # `kind` and `kind` occurs nowhere else, each line start is one of those fields, so a chunk has at
        # most `rows` lines; the rows of all chunks add up to the count of lines (checked below), so each
        # chunk has exactly `rows` lines and each line exactly `width` fields.
        if rest or (kind and (chunk.count(kind) != rows or fields[0::width].count(kind) != rows)):
            return None
        columns = [fields[i::width] for i in range(offset, width)]
        del chunk, fields
        # Each column joined once, while its strings are still in the cache: the checks, the table and the
        # comparison with the previous parse all read these.
        joined = list(map("\n".join, columns))
        if not _valid_columns(columns, joined, layout):
            return None
        for column_parts, part in zip(parts, joined, strict=True):
            column_parts.append(part)
        count -= rows
        start = stop + 1
    if count != 0 or not parts[0]:
        return None
    return list(map("\n".join, parts))


def _valid_columns(columns: list[list[str]], joined: list[str], layout: ClientLayout) -> bool:
    """The reference's rules (common.is_count, common.plausible_address) over whole columns: every value
    non-empty, and the rule holds for their concatenation. In ASCII only: int() and normalise_time() then
    cannot fail on any value later."""
    for i in layout.counted:
        if not all(columns[i]) or not joined[i].isascii() or not is_count(joined[i].replace("\n", "")):
            return False
    since = layout.connected_since
    real = layout.real_address
    return (since is None or joined[since].isascii()) and all(columns[real]) and plausible_address(joined[real])


def _counters(joined: list[str], layout: ClientLayout) -> tuple[dict[str, str], dict[str, Any]]:
    """The byte counters stay text when the file wrote them as str() would (ASCII, no leading zero): the
    views print that text as it is, and the integers are built only for whoever reads them."""
    texts: dict[str, str] = {}
    counters: dict[str, Any] = {}
    for name, i in (("bytes_received", layout.bytes_received), ("bytes_sent", layout.bytes_sent)):
        text = joined[i]
        if ("\n0" not in text and not text.startswith("0")) or _LEADING_ZERO.search(text) is None:
            texts[name] = text
            counters[name] = partial(_ints, text)
        else:
            counters[name] = list(_ints(text))
    return texts, counters


def _ints(text: str) -> Iterable[int]:
    return map(int, text.split("\n"))


class _Raw:
    """A block's client columns other than the counters, as one string, and the columns built from it.

    The columns of per-session strings (names, addresses, ids, times) are Rebuilt: split from this text, or
    from a text of derived values (hosts, ports, normalised times) joined once, at every read, and never
    kept by the table. Columns whose values are few distinct strings (usernames, ciphers, protocols) or
    numbers are built once and kept. Nothing here refers to a table: a table that shares a previous one's
    builders keeps only this text alive, never the earlier snapshots.
    """

    def __init__(
        self, joined: list[str], layout: ClientLayout, default_protocol: str, join: VirtualJoin | None
    ) -> None:
        kept = [i for i in range(layout.width) if i not in (layout.bytes_received, layout.bytes_sent)]
        self.identity = "\x00".join([joined[i] for i in kept])
        self.spans: dict[int, tuple[int, int]] = {}
        at = 0
        for i in kept:
            self.spans[i] = (at, at + len(joined[i]))
            at += len(joined[i]) + 1
        self.layout = layout
        self.default_protocol = default_protocol
        self.join = join

    def values(self, i: int) -> list[str]:
        first, last = self.spans[i]
        return self.identity[first:last].split("\n")

    def shared(self, i: int) -> list[str]:
        """One string object per distinct value (UNDEF, ciphers): the kept tuple is then mostly pointers."""
        values = self.values(i)
        memo: dict[str, str] = {}
        return list(map(memo.setdefault, values, values))

    @cached_property
    def times_text(self) -> str | None:
        """The Connected Since values normalised and joined, or None when they are so already."""
        since = self.layout.connected_since
        assert since is not None  # only asked for when the block has the column
        column = self.values(since)
        normalised = _times(column)
        return None if normalised is column else "\n".join(normalised)

    def times(self, i: int) -> list[str]:
        text = self.times_text
        return self.values(i) if text is None else text.split("\n")

    def ints(self, i: int) -> Iterable[int]:
        return map(int, self.values(i))

    def names(self) -> list[str]:
        return self.values(self.layout.common_name)

    @cached_property
    def addresses(self) -> tuple[tuple[str, ...], str, str]:
        """(protocols, hosts joined by newlines, ports joined by newlines): no value holds a newline."""
        protocols, hosts, ports = _split_addresses(self.values(self.layout.real_address), self.default_protocol)
        return tuple(protocols), "\n".join(hosts), "\n".join(ports)

    def address_part(self, part: int) -> list[str]:
        text = self.addresses[part]
        assert isinstance(text, str)
        return text.split("\n")

    @cached_property
    def virtual_texts(self) -> tuple[str, str]:
        assert self.join is not None  # only status-version 1 asks, and it gives the join
        v4, v6 = self.join(self.values(self.layout.real_address))
        return "\n".join(v4), "\n".join(v6)

    def virtual(self, family: int) -> list[str]:
        return self.virtual_texts[family].split("\n")

    def columns(self, count: int) -> dict[str, Iterable[Any] | Callable[[], Iterable[Any]] | Rebuilt]:
        """Every column but the counters: a builder for each one the block has, blanks for the others."""
        layout, default = self.layout, self.default_protocol
        blank = ("",) * count

        def text(i: int | None, build: Callable[[int], Iterable[Any]] = self.values) -> Any:
            return Rebuilt(partial(build, i)) if i is not None else blank

        first, last = self.spans[layout.real_address]
        # Only an address that starts with "udp" or "tcp" can carry a protocol prefix: without one, every
        # row has the default protocol and no address needs splitting yet.
        identity = self.identity
        prefixed = identity.startswith(("udp", "tcp"), first, last) or any(
            identity.find(prefix, first, last) >= 0 for prefix in ("\nudp", "\ntcp")
        )
        since_t = layout.connected_since_epoch
        return {
            "common_name": Rebuilt(self.names),
            "real_address": text(layout.real_address),
            "remote_host": Rebuilt(partial(self.address_part, 1)),
            "remote_port": Rebuilt(partial(self.address_part, 2)),
            "protocol": self.addresses[0] if prefixed else (default,) * count,
            "virtual_address": text(layout.virtual_address),
            "virtual_ipv6_address": text(layout.virtual_ipv6_address),
            "connected_since": text(layout.connected_since, self.times),
            "connected_since_epoch": partial(self.ints, since_t) if since_t is not None else (None,) * count,
            "username": partial(self.shared, layout.username) if layout.username is not None else blank,
            "client_id": text(layout.client_id),
            "peer_id": text(layout.peer_id),
            "cipher": partial(self.shared, layout.cipher) if layout.cipher is not None else blank,
        }


def _times(column: list[str]) -> list[str]:
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
            if PROTOCOL_PREFIXES.keys().isdisjoint(fields[0::2]):
                return repeat(default_protocol, len(column)), fields[0::2], fields[1::2]
        elif colons == {2}:  # 2.7's "udp4:1.2.3.4:port": the prefix gives the protocol, never empty
            fields = joined.split(":")
            prefixes = fields[0::3]
            if PROTOCOL_PREFIXES.keys() >= set(prefixes):
                return map(PROTOCOL_PREFIXES.__getitem__, prefixes), fields[1::3], fields[2::3]
    split = list(map(split_real_address, column))
    protocols = [protocol or default_protocol for protocol, _, _ in split]
    return protocols, [host for _, host, _ in split], [port for _, _, port in split]


# Route rows.


def _routes(block: _Block, layout: RouteLayout) -> RouteTable | None:
    """The routes of a block, validated now and built when first read; None to decline."""
    if block.rows == 0:
        return EMPTY_ROUTES
    text, start, end, count, sep, kind = block
    per_line = layout.width - 1 + (1 if kind else 0)
    # With exactly as many separators as `count` well-formed lines hold, no line can have borrowed a field
    # from another, so each field the regex matched lies within one line.
    if text.count(sep, start, end) != per_line * count:
        return None
    if _route_pattern(layout.last_ref_epoch, layout.width, sep, kind).fullmatch(text, start, end + 1) is None:
        return None
    return LazyRouteTable(count, partial(_route_columns, text[start:end], sep, layout, kind))


@functools.lru_cache(maxsize=16)
def _route_pattern(epoch_at: int | None, width: int, sep: str, kind: str) -> re.Pattern[str]:
    """Route lines: `kind` first (if any), exactly `width` fields, an ASCII-digit (or empty) Last Ref
    (time_t). A field may hold anything but the separator, newlines included: a negated single character is
    scanned several times faster than a negated pair (the separator count above keeps lines apart)."""
    field = f"[^{re.escape(sep)}]*+"
    last = f"[^{re.escape(sep)}\\n]*+"  # the last field runs up to the newline, which it must not take
    fields = [("[0-9]*+" if i == epoch_at else field if i < width - 1 else last) for i in range(width)]
    line = (re.escape(kind + sep) if kind else "") + re.escape(sep).join(fields) + "\\n"
    return re.compile(f"(?>{line})*+")


def _route_columns(block: str, sep: str, layout: RouteLayout, kind: str) -> list[list[Any]]:
    """The Route columns of validated route lines, split _ROWS lines at a time."""
    offset = 1 if kind else 0
    width = layout.width + offset
    wanted = (layout.virtual_address, layout.common_name, layout.real_address, layout.last_ref, layout.last_ref_epoch)
    columns: list[list[str]] = [[] for _ in wanted]
    lines = block.split("\n")
    for at in range(0, len(lines), _ROWS):
        fields = sep.join(lines[at : at + _ROWS]).split(sep)
        for values, i in zip(columns, wanted, strict=True):
            values += fields[i + offset :: width] if i is not None else repeat("", len(fields) // width)
    virtual, names, real, last_ref, epochs = columns
    if layout.last_ref is not None:
        last_ref = _times(last_ref)
    return [virtual, names, real, last_ref, [int(t) if t else None for t in epochs]]
