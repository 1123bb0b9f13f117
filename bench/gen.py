"""Realistic OpenVPN server status files of any size, for the benchmark and the equivalence check.

The rows are built once per size; each `render(bump)` only changes the byte counters, the TIME line and
the Updated line, as OpenVPN does between two rewrites of the same set of clients.
"""

from __future__ import annotations

import copy
import random
import time

TITLE = "OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]"
V3_CLIENT_HEADER = (
    "Common Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\t"
    "Connected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher"
)
V3_ROUTE_HEADER = "Virtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)"


def _stamp(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


class StatusFile:
    """One server's clients. `duplicates` share a CN (duplicate-cn); `ipv6` own a second route."""

    def __init__(self, sessions: int, seed: int = 8, duplicates: float = 0.03, ipv6: float = 0.3) -> None:
        rng = random.Random(seed)
        now = int(time.time())
        self.sessions = sessions
        self.rx: list[int] = []
        self.tx: list[int] = []
        self.rows: list[tuple[str, str, str, str, str, int, str]] = []
        self.v3_routes: list[str] = []
        self.v1_routes: list[str] = []
        names: list[str] = []
        used_addresses: set[str] = set()
        # OpenVPN lists clients in its hash-table order, not by name: the renderers must really sort.
        order = list(range(sessions))
        rng.shuffle(order)
        for i in range(sessions):
            if names and rng.random() < duplicates:
                cn = rng.choice(names)
            elif rng.random() < 0.01:
                cn = f"{rng.choice(['alice', 'bob', 'carol', 'dave'])} laptop {i}"  # spaces are allowed
            else:
                cn = f"user{order[i]:06d}.vpn.example.com"
                names.append(cn)
            while True:
                real = (
                    f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                    f":{rng.randint(1024, 65535)}"
                )
                if real not in used_addresses:
                    used_addresses.add(real)
                    break
            v4 = f"10.{8 + i // 65536}.{i // 256 % 256}.{i % 256}"
            v6 = f"fd00:8::{i:x}" if rng.random() < ipv6 else ""
            since_t = now - rng.randint(60, 7 * 86400)
            since = _stamp(since_t)
            self.rows.append((cn, real, v4, v6, since, since_t, str(i)))
            self.rx.append(rng.randint(1_000, 50_000_000_000))
            self.tx.append(rng.randint(1_000, 50_000_000_000))
            last_t = now - rng.randint(0, 60)
            last = _stamp(last_t)
            self.v3_routes.append(f"ROUTING_TABLE\t{v4}\t{cn}\t{real}\t{last}\t{last_t}")
            self.v1_routes.append(f"{v4},{cn},{real},{last}")
            if v6:
                self.v3_routes.append(f"ROUTING_TABLE\t{v6}\t{cn}\t{real}\t{_stamp(since_t)}\t{since_t}")
                self.v1_routes.append(f"{v6},{cn},{real},{_stamp(since_t)}")
        self._prebuild()

    def _prebuild(self) -> None:
        # Prebuilt row halves: a rewrite only formats the two counters in between.
        self._v3_pre = [f"CLIENT_LIST\t{cn}\t{real}\t{v4}\t{v6}\t" for cn, real, v4, v6, *_ in self.rows]
        self._v3_post = [
            f"\t{since}\t{since_t}\tUNDEF\t{cid}\t{cid}\tAES-256-GCM" for _, _, _, _, since, since_t, cid in self.rows
        ]
        self._v1_pre = [f"{cn},{real}," for cn, real, *_ in self.rows]
        self._v1_post = [f",{since}" for *_, since, _, _ in self.rows]

    def churned(
        self, ended: int, started: int, reconnects: int = 0, seed: int = 9, now: int | None = None
    ) -> StatusFile:
        """The clients of OpenVPN's next rewrite after `ended` sessions left and `started` arrived: a new
        StatusFile, this one unchanged. New sessions get fresh Client IDs and a Connected Since within the
        last 30 s; the first `reconnects` of them reuse the common name of a session that ended."""
        if not 0 <= reconnects <= min(ended, started) or ended > self.sessions:
            raise ValueError("churned: need reconnects <= ended, started and ended <= sessions")
        rng = random.Random(seed)
        now = int(time.time()) if now is None else now
        gone = set(rng.sample(range(self.sessions), ended))
        keep = [i for i in range(self.sessions) if i not in gone]
        out = copy.copy(self)
        out.rows = [self.rows[i] for i in keep]
        out.rx, out.tx = [self.rx[i] for i in keep], [self.tx[i] for i in keep]
        gone_real = {self.rows[i][1] for i in gone}
        out.v3_routes = [r for r in self.v3_routes if r.split("\t")[3] not in gone_real]
        out.v1_routes = [r for r in self.v1_routes if r.rsplit(",", 2)[1] not in gone_real]
        gone_names = [self.rows[i][0] for i in sorted(gone)]
        next_id = max((int(row[6]) for row in self.rows), default=-1) + 1
        for k in range(started):
            cid = next_id + k
            cn = gone_names[k] if k < reconnects else f"new{cid:06d}.vpn.example.com"
            real = f"198.18.{cid // 256 % 256}.{cid % 256}:{40000 + cid % 20000}"
            v4 = f"10.200.{cid // 256 % 256}.{cid % 256}"
            since_t = now - rng.randint(0, 30)
            out.rows.append((cn, real, v4, "", _stamp(since_t), since_t, str(cid)))
            out.rx.append(rng.randint(1_000, 1_000_000))
            out.tx.append(rng.randint(1_000, 1_000_000))
            out.v3_routes.append(f"ROUTING_TABLE\t{v4}\t{cn}\t{real}\t{_stamp(now)}\t{now}")
            out.v1_routes.append(f"{v4},{cn},{real},{_stamp(now)}")
        out.sessions = len(out.rows)
        out._prebuild()
        return out

    def v3(self, bump: int = 0, now: int | None = None) -> bytes:
        """status-version 3 text; `bump` grows every counter so that each rewrite differs."""
        now = int(time.time()) if now is None else now
        rx, tx = self.rx, self.tx
        lines = [
            f"TITLE\t{TITLE}",
            f"TIME\t{_stamp(now)}\t{now}",
            f"HEADER\tCLIENT_LIST\t{V3_CLIENT_HEADER}",
            *[
                f"{pre}{rx[i] + bump * (i % 97 + 1)}\t{tx[i] + bump * (i % 89 + 1)}{post}"
                for i, (pre, post) in enumerate(zip(self._v3_pre, self._v3_post, strict=True))
            ],
            f"HEADER\tROUTING_TABLE\t{V3_ROUTE_HEADER}",
            *self.v3_routes,
            "GLOBAL_STATS\tMax bcast/mcast queue length\t0",
            "GLOBAL_STATS\tdco_enabled\t0",
            "END",
        ]
        return ("\n".join(lines) + "\n").encode()

    def v1(self, bump: int = 0, now: int | None = None) -> bytes:
        """status-version 1 text (OpenVPN's default format)."""
        now = int(time.time()) if now is None else now
        rx, tx = self.rx, self.tx
        lines = [
            "OpenVPN CLIENT LIST",
            f"Updated,{_stamp(now)}",
            "Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since",
            *[
                f"{pre}{rx[i] + bump * (i % 97 + 1)},{tx[i] + bump * (i % 89 + 1)}{post}"
                for i, (pre, post) in enumerate(zip(self._v1_pre, self._v1_post, strict=True))
            ],
            "ROUTING TABLE",
            "Virtual Address,Common Name,Real Address,Last Ref",
            *self.v1_routes,
            "GLOBAL STATS",
            "Max bcast/mcast queue length,0",
            "END",
        ]
        return ("\n".join(lines) + "\n").encode()


def rewrite_in_place(path: str, data: bytes) -> None:
    """As OpenVPN does: seek to 0, write, truncate. No rename, same inode."""
    with open(path, "r+b" if _exists(path) else "wb") as handle:
        handle.seek(0)
        handle.write(data)
        handle.truncate()


def _exists(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except FileNotFoundError:
        return False
