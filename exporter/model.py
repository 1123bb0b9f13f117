"""The snapshot: one immutable model of what a status source said at one moment.

Sessions and routes are NamedTuples rather than dataclasses because a 100,000-client status file
creates that many of each on every change, and tuple construction is several times cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

HANDSHAKE_CN = "UNDEF"


class Session(NamedTuple):
    common_name: str
    real_address: str
    remote_host: str
    remote_port: str
    protocol: str  # "tcp", "udp", or "" when neither the file nor the config says
    virtual_address: str
    virtual_ipv6_address: str
    bytes_received: int
    bytes_sent: int
    connected_since: str  # normalised to "YYYY-MM-DD HH:MM:SS" (OpenVPN's local time), "" if absent
    connected_since_epoch: int | None
    username: str
    client_id: str
    peer_id: str
    cipher: str

    @property
    def in_handshake(self) -> bool:
        """OpenVPN prints the CN as UNDEF until the TLS handshake has finished."""
        return self.common_name == HANDSHAKE_CN


class Route(NamedTuple):
    virtual_address: str
    common_name: str
    real_address: str
    last_ref: str
    last_ref_epoch: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one complete status text holds."""

    kind: Literal["server", "client"]
    status_version: int  # 1, 2 or 3 (the client-mode file reports 1)
    product: str
    version: str  # "" when the format carries none (status-version 1, client mode)
    title: str
    updated_text: str
    updated_epoch: int | None
    sessions: tuple[Session, ...]
    routes: tuple[Route, ...]
    global_stats: tuple[tuple[str, str], ...]
    client_stats: tuple[tuple[str, int], ...]
    skipped_lines: int  # unknown line types and ambiguous rows that were passed over

    def global_stat(self, name: str) -> str | None:
        for key, value in self.global_stats:
            if key == name:
                return value
        return None
