"""What the reference and the fast parser share: errors, field rules, the frame checks, header layouts.

Every rule about a field (what a count is, how an address splits, how a time reads) is written here once;
both parsers apply these functions, the fast one column by column.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from exporter.model import RouteTable, SessionTable, Snapshot

MONTHS = {
    "Jan": "01", "Feb": "02", "Mar": "03", "Apr": "04", "May": "05", "Jun": "06",
    "Jul": "07", "Aug": "08", "Sep": "09", "Oct": "10", "Nov": "11", "Dec": "12",
}  # fmt: skip

# 2.7 prefixes the Real Address with the socket's protocol; anything else before a colon is an address.
PROTOCOL_PREFIXES = {
    f"{proto}{family}{role}": proto
    for proto in ("udp", "tcp")
    for family in ("", "4", "6")
    for role in (("",) if proto == "udp" else ("", "-server", "-client"))
}

_KNOWN_TYPES = ("TITLE", "TIME", "HEADER", "CLIENT_LIST", "ROUTING_TABLE", "GLOBAL_STATS", "END")
# A line that starts with the tail of a known type is the seam of a torn read, not a new line type.
_FRAGMENTS = frozenset(t[i:] for t in _KNOWN_TYPES for i in range(1, len(t)))

# status-version 1's section lines, with the newlines around them.
V1_ROUTING = "\nROUTING TABLE\n"
V1_STATS = "\nGLOBAL STATS\n"

Format = Literal["v1", "v2", "v3", "client"]


class StatusParseError(Exception):
    """The text is not a complete, well-formed status. `reason` is a short metric-friendly word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class TornStatusError(StatusParseError):
    """The text was caught mid-rewrite: END missing, or content after END."""


# Field rules.


def split_real_address(address: str) -> tuple[str, str, str]:
    """Return (protocol or "", host, port or "") for every Real Address form OpenVPN has printed."""
    protocol = ""
    head, sep, tail = address.partition(":")
    if sep and head in PROTOCOL_PREFIXES:
        protocol = PROTOCOL_PREFIXES[head]
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


def updated_text(text: str) -> str:
    """The time of a TIME or Updated line: normalised when it is a time, else as written."""
    return normalise_time(text) or text


def epoch(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def is_count(text: str) -> bool:
    """Byte counters, client and peer ids and time_t columns: non-empty decimal digits."""
    return text.isdigit()


def plausible_address(text: str) -> bool:
    return bool(text) and " " not in text and "," not in text


def product_version(title: str) -> tuple[str, str]:
    """ "OpenVPN 2.6.15 [git:...] x86_64-..." gives ("OpenVPN", "2.6.15")."""
    parts = title.split(" ", 2)
    if len(parts) >= 2 and parts[1][:1].isdigit():
        return parts[0], parts[1]
    return (parts[0] or "OpenVPN"), ""


def is_torn_seam(line: str, separator: str) -> bool:
    """A line of an unknown type that is really the middle of a record: the seam of a torn read."""
    token = line.split(separator, 1)[0]
    if line.startswith(("HEADER,ERRORS", "ERRORS,")):
        return False  # debug builds print these comma-separated even in status-version 3
    return token in _FRAGMENTS or not token or not (token[0].isupper() and token.replace("_", "").isalnum())


# Header layouts: where each field is, resolved once per header, by name (2.3's eight client columns and
# 2.5+'s twelve read alike). A missing optional column is None.


@dataclass(frozen=True, slots=True)
class ClientLayout:
    header: tuple[str, ...]
    missing: tuple[str, ...]  # required columns the header lacks: such a header is a format error
    common_name: int
    real_address: int
    bytes_received: int
    bytes_sent: int
    virtual_address: int | None
    virtual_ipv6_address: int | None
    connected_since: int | None
    connected_since_epoch: int | None
    username: int | None
    client_id: int | None
    peer_id: int | None
    cipher: int | None
    counted: tuple[int, ...]  # columns whose values must be counts
    free_text: tuple[int, ...]  # columns that may hold the separator in status-version 1/2 (CN, username)

    @property
    def width(self) -> int:
        return len(self.header)


@dataclass(frozen=True, slots=True)
class RouteLayout:
    header: tuple[str, ...]
    missing: tuple[str, ...]
    virtual_address: int
    common_name: int
    real_address: int
    last_ref: int | None
    last_ref_epoch: int | None

    @property
    def width(self) -> int:
        return len(self.header)


_CLIENT_REQUIRED = ("Common Name", "Real Address", "Bytes Received", "Bytes Sent")
_ROUTE_REQUIRED = ("Virtual Address", "Common Name", "Real Address")
_COUNTED = ("Bytes Received", "Bytes Sent", "Client ID", "Peer ID", "Connected Since (time_t)")


def _index(header: tuple[str, ...], required: tuple[str, ...]) -> tuple[dict[str, int], tuple[str, ...]]:
    index = {name: i for i, name in enumerate(header)}
    return index, tuple(name for name in required if name not in index)


@functools.lru_cache(maxsize=32)
def client_layout(header: tuple[str, ...]) -> ClientLayout:
    index, missing = _index(header, _CLIENT_REQUIRED)
    get = index.get
    return ClientLayout(
        header, missing,
        get("Common Name", -1), get("Real Address", -1), get("Bytes Received", -1), get("Bytes Sent", -1),
        get("Virtual Address"), get("Virtual IPv6 Address"), get("Connected Since"),
        get("Connected Since (time_t)"), get("Username"), get("Client ID"), get("Peer ID"),
        get("Data Channel Cipher"),
        counted=tuple(index[n] for n in _COUNTED if n in index),
        free_text=tuple(index[n] for n in ("Common Name", "Username") if n in index),
    )  # fmt: skip


@functools.lru_cache(maxsize=32)
def route_layout(header: tuple[str, ...]) -> RouteLayout:
    index, missing = _index(header, _ROUTE_REQUIRED)
    get = index.get
    return RouteLayout(
        header, missing, get("Virtual Address", -1), get("Common Name", -1), get("Real Address", -1),
        get("Last Ref"), get("Last Ref (time_t)"),
    )  # fmt: skip


def require(layout: ClientLayout | RouteLayout, what: str) -> None:
    if layout.missing:
        raise StatusParseError("format", f"{what} header lacks column(s): {', '.join(layout.missing)}")


# The frame: what is checked before either parser reads a row.


def frame(text: str) -> tuple[Format, int]:
    """The format of a complete status text and where its END line starts, or the error that says why it
    is none. `text` has "\\n" line ends."""
    if not text or text.isspace():  # not text.strip(), which copies the whole text
        raise StatusParseError("empty", "status text is empty")
    if "\x00" in text:
        raise StatusParseError("malformed", "status text contains NUL bytes: not an OpenVPN status file")
    first = text[: text.find("\n")] if "\n" in text else text
    known = first in ("OpenVPN CLIENT LIST", "OpenVPN STATISTICS") or first.startswith(("TITLE", "TIME", "HEADER"))
    if not known:
        raise StatusParseError("format", "not an OpenVPN status file (unrecognised first line)")
    end = len(text)
    while text.endswith("\n", 0, end):
        end -= 1
    last = text.rfind("\n", 0, end) + 1
    if text[last:end] != "END":
        raise TornStatusError("torn", "status text does not end with END (caught mid-rewrite)")
    if text.find("\nEND\n", 0, last) >= 0:
        raise TornStatusError("torn", "status text has content after END (caught mid-rewrite)")
    if first == "OpenVPN CLIENT LIST":
        return "v1", last
    if first == "OpenVPN STATISTICS":
        return "client", last
    token = next(t for t in ("TITLE", "TIME", "HEADER") if first.startswith(t))
    separator = first[len(token) : len(token) + 1]
    if separator not in ("\t", ","):
        raise StatusParseError("format", "not an OpenVPN status file (unrecognised first line)")
    return ("v3" if separator == "\t" else "v2"), last


def mixed_rows(sessions: SessionTable) -> str | None:
    """Why the rows cannot all be current (two rows for one connection: old and new content mixed by a torn
    read), or None."""
    ids = list(filter(None, sessions.client_id))
    if len(ids) != len(set(ids)):
        return "a Client ID appears twice (mixed old and new content)"
    if not ids:
        real_addresses = sessions.real_address
        if len(set(real_addresses)) == len(real_addresses):
            return None  # no address twice at all: the rows with a port, a subset, cannot have one twice either
        addresses = [real for real, port in zip(real_addresses, sessions.remote_port, strict=True) if port]
        if len(addresses) != len(set(addresses)):
            return "a Real Address appears twice (mixed old and new content)"
    return None


def virtual_addresses(
    route_virtual: Sequence[str], route_real: Sequence[str], real: Sequence[str]
) -> tuple[list[str], list[str]]:
    """status-version 1 has no virtual address column: the IPv4 and IPv6 virtual address of each Real
    Address in `real` come from the routes.

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


def v1_global_stats(lines: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, _, value in (line.rpartition(",") for line in lines))


def server_snapshot(
    status_version: int,
    title: str,
    time: tuple[str, int | None],
    tables: tuple[SessionTable, RouteTable],
    global_stats: tuple[tuple[str, str], ...],
    skipped_lines: int,
) -> Snapshot:
    """A server's snapshot. `time` is the update time as text and as time_t (None when the format has no
    time_t); without a TITLE (status-version 1) the product is OpenVPN and the version unknown."""
    product, version = product_version(title)
    return Snapshot(
        kind="server",
        status_version=status_version,
        product=product,
        version=version,
        title=title,
        updated_text=time[0],
        updated_epoch=time[1],
        session_table=tables[0],
        route_table=tables[1],
        global_stats=global_stats,
        client_stats=(),
        skipped_lines=skipped_lines,
    )
