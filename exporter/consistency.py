"""Does a parsed server status describe one moment? CLIENT_LIST and ROUTING_TABLE must name the same clients.

OpenVPN rewrites a status file in place: seek 0, one write() per line, truncate at the end. A reader that
catches it half-way sees the new file's first lines followed by the old file's last ones. When the two
meet on a line boundary every line is well formed, and the parser alone cannot tell. But the two tables
are written one after the other, so such a mix pairs the client list of one moment with the routing table
of another: a client that joined is listed without its route, or a client that left still owns a route
with no client. Hence the rule checked here, which every status OpenVPN writes in one go satisfies:

1. no client (common name, real address) is listed twice: OpenVPN keys its clients by real address;
2. every route belongs to a listed client (same common name and real address);
3. every client with a virtual address (status-version 2 and 3 list it) owns a route: OpenVPN learns the
   route of a client's address when the client connects.

Clients still in their TLS handshake have no virtual address and no route yet, and are allowed. Client-mode
files have no tables and pass. A TAP server routes by MAC address, learnt only once a client sends, so
rule 3 applies to TUN servers only: those whose routing table is not empty and does not start with a MAC.
"""

from __future__ import annotations

import re

from exporter.model import Snapshot

# A TAP route: a MAC address, with OpenVPN's optional `@vlan` suffix.
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}(?:@\d+)?")


def inconsistency(snapshot: Snapshot, previous: Snapshot | None = None) -> str:
    """What disagrees, in one short line (names cut, not echoed whole); "" when the tables agree.

    `previous`, the last snapshot that passed, spares the check when the clients (common name and real
    address) are the same ones in the same order, as after a rewrite that changed only counters: such a
    read serves a session set that was whole already. The check builds the routing table, which costs as
    much as the parse at 100,000 sessions (and status-version 1 joins virtual addresses from it)."""
    sessions, routes = snapshot.session_table, snapshot.route_table
    if not len(sessions) and not len(routes):
        return ""
    if previous is not None and _same_clients(previous, snapshot):
        return ""
    # Columns, not rows: the views build these columns anyway, and rows cost far more at 100,000 sessions.
    clients = list(zip(sessions.common_name, sessions.real_address, strict=True))
    known = set(clients)
    if len(known) != len(clients):
        return "a client is listed twice (torn rewrite?)"
    owners: set[tuple[str, str]] = set()
    for address, name, real in zip(routes.virtual_address, routes.common_name, routes.real_address, strict=True):
        if (name, real) not in known:
            return f"route {address[:64]!r} belongs to no listed client (torn rewrite?)"
        owners.add((name, real))
    if not owners or _MAC.fullmatch(routes.virtual_address[0]):  # one server is all TAP or all TUN
        return ""
    for client, address in zip(clients, sessions.virtual_address, strict=True):
        if address and client not in owners:
            return f"client {client[0][:64]!r} at {address[:64]!r} owns no route (torn rewrite?)"
    return ""


def _same_clients(previous: Snapshot, snapshot: Snapshot) -> bool:
    before, now = previous.session_table, snapshot.session_table
    if len(before) != len(now):
        return False
    # Columns the parser shared with the previous table: the same values, known without building them.
    names = ("common_name", "real_address")
    if all(before.column_token(name) is now.column_token(name) for name in names):
        return True
    return before.common_name == now.common_name and before.real_address == now.real_address
