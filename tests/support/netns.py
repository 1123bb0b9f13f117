"""Network namespaces and OpenVPN binaries for the labs that run real OpenVPN servers and clients.

A lab names its namespaces `<prefix><pytest pid>...` and its temp directories `<marker><pytest pid>-...`,
so that `clean_leftovers()` can remove what a killed earlier run left behind without touching a suite that
is still running.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path


def ip_bin() -> str:
    return shutil.which("ip") or "/usr/sbin/ip"


def openvpn_bin() -> str | None:
    return shutil.which("openvpn") or next(
        (p for p in ("/usr/sbin/openvpn", "/sbin/openvpn") if os.access(p, os.X_OK)), None
    )


def run(argv: list[str], check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def openvpn_version() -> str:
    out = run([openvpn_bin() or "openvpn", "--version"]).stdout
    match = re.match(r"OpenVPN (\S+)", out)
    return match.group(1) if match else "unknown"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(dir_marker: str, ns_prefix: str) -> list[str]:
    """Kill processes and delete namespaces/temp dirs that a killed earlier run left behind.

    Only things that carry the marker or prefix and whose owning pytest PID is gone are touched."""
    marker_re = re.compile(re.escape(dir_marker) + r"(\d+)-")
    ns_re = re.compile(re.escape(ns_prefix) + r"(\d+)")
    me = os.getpid()

    def orphaned(match: re.Match[str] | None) -> bool:
        return match is not None and int(match.group(1)) != me and not pid_alive(int(match.group(1)))

    cleaned: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if orphaned(marker_re.search(cmdline)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                cleaned.append(f"process {entry.name}: {cmdline[:120]}")
    for directory in Path(tempfile.gettempdir()).glob(dir_marker + "*"):
        if orphaned(marker_re.match(directory.name + "-")):
            shutil.rmtree(directory, ignore_errors=True)
            cleaned.append(f"directory {directory}")
    for line in run([ip_bin(), "netns", "list"]).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if orphaned(ns_re.match(name)):
            run([ip_bin(), "netns", "del", name])
            cleaned.append(f"namespace {name}")
    return cleaned


def capability_problem(ns_prefix: str, lab: str) -> str | None:
    """Why no real OpenVPN can run here (None if it can). Tries the real operations, not just permissions."""
    if os.geteuid() != 0:
        return f"{lab} needs root (network namespaces and tun devices)"
    if openvpn_bin() is None:
        return "openvpn is not installed (apt-get install openvpn)"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun does not exist"
    probe = f"{ns_prefix}{os.getpid()}probe"
    result = run([ip_bin(), "netns", "add", probe])
    if result.returncode != 0:
        return f"cannot create a network namespace: {result.stderr.strip()}"
    try:
        # Opening /dev/net/tun can succeed where creating a device fails, so create one.
        result = run([ip_bin(), "-n", probe, "tuntap", "add", "dev", "probe0", "mode", "tun"])
        if result.returncode != 0:
            return f"cannot create a tun device: {result.stderr.strip()}"
    finally:
        run([ip_bin(), "netns", "del", probe])
    return None


def add_namespace(name: str) -> None:
    """A fresh namespace with its loopback up (an earlier one of that name is deleted first)."""
    run([ip_bin(), "netns", "del", name])
    result = run([ip_bin(), "netns", "add", name])
    if result.returncode != 0:
        raise RuntimeError(f"ip netns add {name}: {result.stderr.strip()}")
    run([ip_bin(), "-n", name, "link", "set", "lo", "up"])


def netns_exec(namespace: str, argv: list[str]) -> list[str]:
    # `ip netns exec` execs the command, so the PID is the command's own and SIGTERM reaches it.
    return [ip_bin(), "netns", "exec", namespace, *argv]
