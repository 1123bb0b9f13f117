"""`openvpn-exporter prepare`, the init container's job, on a real filesystem."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.support.common import missing as require_or_skip

SETPRIV = "/usr/bin/setpriv"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "prepare", *args], capture_output=True, text=True, timeout=30
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_missing_files_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o077)  # the mode must not depend on the container's umask
    try:
        result = run(str(tmp_path / "status" / "tcp.status"), str(tmp_path / "status" / "udp.status"))
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    for name in ("tcp.status", "udp.status"):
        assert mode(tmp_path / "status" / name) == 0o644
        assert (tmp_path / "status" / name).read_bytes() == b""


def test_fixes_the_mode_of_an_existing_file_and_keeps_its_content(tmp_path: Path) -> None:
    path = tmp_path / "udp.status"
    path.write_text("END\n")
    path.chmod(0o600)
    result = run("--mode=0640", str(path))
    assert result.returncode == 0
    assert mode(path) == 0o640
    assert path.read_text() == "END\n"
    assert "mode set to 0640" in result.stdout


def test_paths_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yaml"
    config.write_text(f"ovpntcpstatus: {tmp_path}/t.status\novpnudpstatus: {tmp_path}/u.status\n")
    result = run("--config.file", str(config))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t.status").exists() and (tmp_path / "u.status").exists()


def test_a_directory_in_the_way_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "udp.status").mkdir()
    result = run(str(tmp_path / "udp.status"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"openvpn-exporter: {tmp_path / 'udp.status'}: exists and is not a regular file"


def test_bad_mode_is_one_line(tmp_path: Path) -> None:
    result = run("--mode=rw", str(tmp_path / "x"))
    assert result.returncode == 1
    assert "not an octal file mode" in result.stderr
    assert "Traceback" not in result.stderr


def _run_as_member(*args: str) -> subprocess.CompletedProcess[str]:
    """prepare without any capability (no CAP_CHOWN), in supplementary group 4242 only, as a pod's fsGroup."""
    return subprocess.run(
        [SETPRIV, "--groups", "4242", "--bounding-set", "-all", "--inh-caps", "-all", "--",
         sys.executable, "-m", "exporter", "prepare", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip


def test_group_shares_the_file_with_the_fs_group(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not Path(SETPRIV).exists():
        require_or_skip("dropping every capability with setpriv needs root and util-linux")
    path = tmp_path / "udp.status"
    result = _run_as_member("--mode=0660", "--group=4242", str(path))
    assert result.returncode == 0, result.stderr
    st = path.stat()
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (4242, 0o660)
    assert "group 4242" in result.stdout
    # A group the process is not in: one line naming the fix, no traceback.
    refused = _run_as_member("--mode=0660", "--group=4343", str(tmp_path / "tcp.status"))
    assert refused.returncode == 1
    assert "cannot give the file to group 4343" in refused.stderr
    assert "fsGroup" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_bad_group_is_one_line(tmp_path: Path) -> None:
    result = run("--group=wheel", str(tmp_path / "x"))
    assert result.returncode == 1
    assert "not a numeric group id" in result.stderr
    assert not (tmp_path / "x").exists()
