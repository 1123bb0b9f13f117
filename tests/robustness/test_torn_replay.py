"""Every state a reader can catch during OpenVPN's in-place rewrite is served as the old file, the new file,
or not at all: never a session set that is neither.

OpenVPN rewrites a status file with seek(0), one write() per line and a final truncate. The states between
are the new file's first k lines followed by the old file's bytes from there on. Here every line of every
client row has the same length, so every cut falls on a line boundary of both files: the hardest case,
where each line of the mix is well formed. Clients leave and join between the two files, in OpenVPN's
hash-table (unsorted) order, in each status version.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from exporter.sources import file as file_source
from exporter.sources.file import FileSource

TITLE = "OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]"
STAMP = "2026-11-27 05:11:17"
EPOCH = 1795756277


def client(n: int) -> tuple[str, str, str]:
    """A client's (common name, real address, virtual address), the same length for every n < 10,000."""
    return (
        f"client{n:04d}",
        f"198.51.{100 + n // 100}.{100 + n % 100}:{40000 + n}",
        f"10.8.{100 + n // 100}.{100 + n % 100}",
    )


def render(version: int, clients: list[int], rx: int) -> bytes:
    sep = "\t" if version == 3 else ","
    rows = [client(n) for n in clients]
    if version == 1:
        lines = [
            "OpenVPN CLIENT LIST",
            f"Updated,{STAMP}",
            "Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since",
        ]
        lines += [f"{cn},{real},{rx:06d},{rx:06d},{STAMP}" for cn, real, _ in rows]
        lines += ["ROUTING TABLE", "Virtual Address,Common Name,Real Address,Last Ref"]
        lines += [f"{v},{cn},{real},{STAMP}" for cn, real, v in rows]
        lines += ["GLOBAL STATS", "Max bcast/mcast queue length,0", "END"]
    else:
        head = [
            "Common Name", "Real Address", "Virtual Address", "Virtual IPv6 Address", "Bytes Received", "Bytes Sent",
            "Connected Since", "Connected Since (time_t)", "Username", "Client ID", "Peer ID", "Data Channel Cipher",
        ]  # fmt: skip
        lines = [sep.join(["TITLE", TITLE]), sep.join(["TIME", STAMP, str(EPOCH + rx)])]
        lines.append(sep.join(["HEADER", "CLIENT_LIST", *head]))
        lines += [
            sep.join(
                [
                    "CLIENT_LIST",
                    cn,
                    real,
                    v,
                    "",
                    f"{rx:06d}",
                    f"{rx:06d}",
                    STAMP,
                    str(EPOCH),
                    "UNDEF",
                    cn[6:],
                    cn[6:],
                    "AES-256-GCM",
                ]
            )
            for cn, real, v in rows
        ]
        route_head = ["Virtual Address", "Common Name", "Real Address", "Last Ref", "Last Ref (time_t)"]
        lines.append(sep.join(["HEADER", "ROUTING_TABLE", *route_head]))
        lines += [sep.join(["ROUTING_TABLE", v, cn, real, STAMP, str(EPOCH)]) for cn, real, v in rows]
        lines += [sep.join(["GLOBAL_STATS", "Max bcast/mcast queue length", "0"]), "END"]
    return "".join(line + "\n" for line in lines).encode()


def intermediate_states(old: bytes, new: bytes) -> list[bytes]:
    """What the file holds after each write() of a rewrite of `old` into `new`, before the truncate."""
    states = []
    written = 0
    for line in new.splitlines(keepends=True):
        written += len(line)
        states.append(new[:written] + old[written:])
    return states


def rewrites(seed: int) -> list[tuple[list[int], list[int]]]:
    """Pairs of client lists: some leave, some join, some stay, each list shuffled; sometimes more, sometimes fewer."""
    rng = random.Random(seed)
    pairs = []
    for leave, join in ((1, 1), (3, 0), (0, 3), (2, 5), (5, 2), (12, 12)):
        before = rng.sample(range(10_000), 24)
        stay = before[leave:]
        joined = [n for n in rng.sample(range(10_000), join + 24) if n not in before][:join]
        after = stay + joined
        rng.shuffle(before)
        rng.shuffle(after)
        pairs.append((before, after))
    return pairs


def session_set(reading_snapshot: object) -> frozenset[tuple[str, str]]:
    sessions = reading_snapshot.sessions  # type: ignore[attr-defined]
    return frozenset((s.common_name, s.real_address) for s in sessions)


def write_version(path: Path, data: bytes, serial: int) -> None:
    """Write `data` with an mtime of its own: with the quiet window off, two states written within one
    tick of the file clock would otherwise share a stat and the second would not be read."""
    path.write_bytes(data)
    stamp = 1_700_000_000_000_000_000 + serial * 1_000_000
    os.utime(path, ns=(stamp, stamp))


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("follow", [False, True], ids=["each-state-alone", "one-source-follows"])
def test_no_state_of_an_in_place_rewrite_is_served_unless_old_or_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int, seed: int, follow: bool
) -> None:
    # The quiet window is off: the content check alone must reject every mix (a writer can be paused
    # for longer than any window on a loaded host). Each state is read by a new source (the rule with no
    # previous snapshot), or by one source that read the old file and follows the rewrite to its end.
    monkeypatch.setattr(file_source, "QUIET_SECONDS", 0.0)
    path = tmp_path / "server.status"
    replayed = rejected = accepted_mixes = serial = 0
    for rx, (before, after) in enumerate(rewrites(seed)):
        old, new = render(version, before, rx), render(version, after, rx + 1)
        expected = {frozenset(client(n)[:2] for n in before), frozenset(client(n)[:2] for n in after)}
        source = FileSource("replay", str(path), "udp", 1 << 20)
        if follow:
            serial += 1
            write_version(path, old, serial)
            assert source.refresh().error == ""
        for state in [*intermediate_states(old, new), new]:
            if not follow:
                source = FileSource("replay", str(path), "udp", 1 << 20)
            serial += 1
            write_version(path, state, serial)
            reading = source.refresh()
            replayed += 1
            if reading.error:
                rejected += 1
            else:
                accepted_mixes += state not in (old, new)
            if reading.snapshot is not None:  # what is served: this read, or the last complete one
                assert session_set(reading.snapshot) in expected, state.decode()
            else:
                assert not follow and reading.error
        final = source.refresh()
        assert final.error == "" and final.snapshot is not None
        assert session_set(final.snapshot) == frozenset(client(n)[:2] for n in after)
    assert replayed > 100
    assert rejected > 0  # the mixes that change the session set were there to reject
    assert accepted_mixes > 0  # and mixes of unchanged clients with new counters still read


def test_the_consistent_file_reads_and_a_mix_is_reported_as_torn(tmp_path: Path) -> None:
    path = tmp_path / "server.status"
    old, new = render(3, [1, 2, 3], 0), render(3, [4, 2, 3], 1)
    path.write_bytes(old)
    source = FileSource("replay", str(path), "udp", 1 << 20)
    good = source.refresh()
    assert good.error == "" and good.snapshot is not None
    # The new first client over the old ones: client0004 has no route, client0001's route has no client.
    path.write_bytes(intermediate_states(old, new)[3])
    torn = source.refresh()
    assert "torn rewrite" in torn.error
    assert torn.snapshot == good.snapshot  # the last complete read is still served
    assert dict(torn.read_errors) == {"torn": 1}
