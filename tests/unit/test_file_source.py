"""FileSource on a real filesystem: caching by stat, torn rewrites, files that vanish or are not files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.sources.base import Reading
from exporter.sources.file import FileSource
from tests.support.common import CAPTURED

UDP_V3 = CAPTURED / "server-udp-status-v3.log"


def source(path: Path, max_bytes: int = 1 << 20) -> FileSource:
    return FileSource("udp", str(path), "udp", max_bytes)


def age(path: Path, seconds: float = 10) -> None:
    """Push the mtime back so the file counts as settled (not written within the last timestamp tick)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def settled_copy(tmp_path: Path) -> tuple[Path, FileSource, Reading]:
    """The captured status-version 3 file, copied and aged past the quiet window, its source, and the
    source's first reading of it."""
    path = tmp_path / "udp.status"
    shutil.copy(UDP_V3, path)
    age(path)
    src = source(path)
    return path, src, src.refresh()


def test_unchanged_file_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, src, first = settled_copy(tmp_path)
    reads = []
    original = src._read
    monkeypatch.setattr(src, "_read", lambda: reads.append(1) or original())
    second = src.refresh()
    assert reads == []
    assert second.snapshot is first.snapshot
    assert second.generation == first.generation


def test_changed_file_is_read_again(tmp_path: Path) -> None:
    path, src, first = settled_copy(tmp_path)
    path.write_text(UDP_V3.read_text().replace("\t7444\t", "\t9999\t"))
    second = src.refresh()
    assert second.generation == first.generation + 1
    assert second.snapshot is not None
    assert second.snapshot.sessions[0].bytes_received == 9999


def test_torn_rewrite_keeps_the_last_complete_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "udp.status"
    shutil.copy(UDP_V3, path)
    src = source(path)
    good = src.refresh()
    shutil.copy(CAPTURED / "torn-read-v3-no-END.log", path)
    torn = src.refresh()
    assert torn.snapshot is good.snapshot
    assert torn.available
    assert "does not end with END" in torn.error
    assert dict(torn.read_errors) == {"torn": 1}


def test_file_that_is_never_complete_has_no_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "udp.status"
    shutil.copy(CAPTURED / "torn-read-v3-junk-after-END.log", path)
    reading = source(path).refresh()
    assert reading.snapshot is None
    assert not reading.is_up(now=0, stale_after=0)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "missing"),
        (lambda p: p.mkdir(), "not_regular"),
        (lambda p: os.mkfifo(p), "not_regular"),
        (lambda p: p.write_bytes(b"x" * 2048), "too_large"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(os.urandom(512)), None),
    ],
    ids=["missing", "directory", "fifo", "huge", "empty", "binary"],
)
def test_files_that_cannot_be_status_files(tmp_path: Path, make: object, reason: str | None) -> None:
    path = tmp_path / "udp.status"
    make(path)  # type: ignore[operator]
    reading = source(path, max_bytes=1024).refresh()
    assert reading.snapshot is None
    assert reading.error
    counts = dict(reading.read_errors)
    assert sum(counts.values()) == 1
    if reason is not None:
        assert reason in counts


def test_deleted_and_recreated_file_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "udp.status"
    shutil.copy(UDP_V3, path)
    src = source(path)
    assert len(src.refresh().snapshot.sessions) == 3  # type: ignore[union-attr]
    path.unlink()
    gone = src.refresh()
    assert not gone.available
    shutil.copy(CAPTURED / "server-status-v3-no-clients.log", path)
    back = src.refresh()
    assert back.available and back.snapshot is not None and back.snapshot.sessions == ()


def test_freshness_uses_the_time_line_else_the_mtime(tmp_path: Path) -> None:
    v3 = tmp_path / "v3.status"
    shutil.copy(UDP_V3, v3)
    reading = source(v3).refresh()
    assert reading.last_update == 1795756450
    assert reading.is_up(now=1795756450 + 100, stale_after=180)
    assert not reading.is_up(now=1795756450 + 200, stale_after=180)
    v1 = tmp_path / "v1.status"
    shutil.copy(CAPTURED / "server-udp-status-v1.log", v1)
    reading = source(v1).refresh()
    assert reading.last_update == pytest.approx(v1.stat().st_mtime)


def test_a_failed_parse_is_remembered_per_file_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.sources import file as file_module

    path = tmp_path / "udp.status"
    path.write_text("TITLE\tnot really\nCLIENT_LIST\tgarbage\n")
    age(path)
    parses: list[int] = []
    real_parse = file_module.parse_status
    monkeypatch.setattr(file_module, "parse_status", lambda *a: parses.append(1) or real_parse(*a))
    src = source(path)
    first, second = src.refresh(), src.refresh()
    assert first.error and second.error == first.error
    assert len(parses) == 1  # the same bad version is not parsed on every scrape
    assert sum(n for _, n in second.read_errors) == 1
    shutil.copy(UDP_V3, path)
    age(path)
    assert src.refresh().error == ""
    assert len(parses) == 2


def test_a_line_over_the_bound_is_refused_before_the_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.sources import file as file_module

    path = tmp_path / "udp.status"
    path.write_bytes(UDP_V3.read_bytes().replace(b"\nEND", b"\n" + b"x" * (3 * file_module.MAX_LINE_BYTES) + b"\nEND"))
    age(path)
    monkeypatch.setattr(file_module, "parse_status", lambda *a: pytest.fail("parsed a file with a hostile line"))
    reading = source(path, max_bytes=1 << 22).refresh()
    assert "bytes or more" in reading.error
    assert dict(reading.read_errors) == {"malformed": 1}
    assert file_module.has_long_line(b"a\n" * 100_000) is False


def test_a_time_line_in_the_future_ages_by_the_mtime(tmp_path: Path) -> None:
    import time

    path = tmp_path / "udp.status"
    text = UDP_V3.read_text()
    epoch = next(line.split("\t")[2] for line in text.splitlines() if line.startswith("TIME\t"))
    future = int(time.time()) + 7 * 86400  # OpenVPN's clock (or ours) stepped back a week
    path.write_text(text.replace(epoch, str(future), 1))
    age(path, 600)
    reading = source(path).refresh()
    assert reading.error == ""
    assert reading.last_update == pytest.approx(path.stat().st_mtime)
    # Written ten minutes ago and never again: stale under a 5-minute bound, not up for good.
    assert not reading.is_fresh(time.time(), 300)


def _rewriter(path: Path, pause: float) -> subprocess.Popen[bytes]:
    """A writer in a process of its own (no interpreter lock shared with the reader) that rewrites the
    file's own text in place, line by line, for up to 30 s, pausing `pause` seconds between rewrites."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "data = open(sys.argv[1], 'rb').read().splitlines(keepends=True)\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
            "end = time.monotonic() + 30\n"
            "while time.monotonic() < end:\n"
            "    os.lseek(fd, 0, 0)\n"
            "    for line in data: os.write(fd, line)\n"
            "    time.sleep(float(sys.argv[2]))\n",
            str(path),
            str(pause),
        ]
    )


def test_a_writer_that_never_pauses_is_still_followed(tmp_path: Path) -> None:
    """On Linux 6.13+ every write after a stat moves mtime, so a stat taken around a read never agrees while
    a writer keeps writing; two reads that give the same bytes vouch for the version instead."""
    import time

    path, src, good = settled_copy(tmp_path)
    writer = _rewriter(path, 0.0)
    try:
        time.sleep(0.2)
        readings = [src.refresh() for _ in range(3)]
    finally:
        writer.kill()
        writer.wait()
    # The bytes never change, so every read is whole: each refresh must give a reading of its own, not
    # "still being rewritten" with the last snapshot kept.
    assert [r.error for r in readings] == ["", "", ""]
    assert all(r.snapshot == good.snapshot for r in readings)


def test_a_file_rewritten_without_pause_is_read_in_bounded_time(tmp_path: Path) -> None:
    import time

    from exporter.sources import file as file_module

    path, src, good = settled_copy(tmp_path)
    # Pauses far shorter than the quiet window.
    writer = _rewriter(path, 0.002)
    readings, took = [], 0.0
    try:
        time.sleep(0.2)
        for _ in range(5):
            started = time.monotonic()
            readings.append(src.refresh())
            took = max(took, time.monotonic() - started)
    finally:
        writer.kill()
        writer.wait()
    assert took < file_module.MAX_QUIET_WAIT + 0.5
    # The same text each time: a read whose stat did not move is whole; the others give up in time, and
    # the last complete snapshot is what is served either way.
    assert all(r.snapshot == good.snapshot for r in readings)
    assert all(r.error == "" or "still being rewritten" in r.error for r in readings)
