"""`openvpn-exporter prepare`: make the status files readable before OpenVPN starts.

OpenVPN creates a missing status file 0600 as its own user (normally root), which a non-root sidecar
cannot read; it keeps the mode and owner of a file that already exists. An init container running this
from the exporter's image pre-creates the files, so the chart needs no extra image.

With `--group` (the pod's fsGroup) and a mode such as 0660 the files are shared through that group: the
exporter owns them and OpenVPN, root but in the group, writes them without CAP_DAC_OVERRIDE.
"""

from __future__ import annotations

import os
import stat

DEFAULT_MODE = 0o644


class PrepareError(Exception):
    """One line, fit to print as it is."""


def parse_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise PrepareError(f"--mode: {text!r} is not an octal file mode such as 0644") from None
    if not 0 <= mode <= 0o777:
        raise PrepareError(f"--mode: {text!r} is not a file permission mode (0000 to 0777)")
    return mode


def parse_group(text: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFFFFFE:
        raise PrepareError(f"--group: {text!r} is not a numeric group id such as 65532")
    return int(text)


def set_group(path: str, group: int) -> str:
    """Give `path` to `group`; a non-root owner may do so for a group it is a member of (no CAP_CHOWN)."""
    st = os.lstat(path)
    if st.st_gid == group:
        return ""
    try:
        os.chown(path, -1, group)
    except PermissionError:
        raise PrepareError(
            f"{path}: cannot give the file to group {group}: uid {os.getuid()} is not a member "
            "(run the pod with this group as podSecurityContext.fsGroup or in supplementalGroups)"
        ) from None
    return f", group {group}"


def prepare_file(path: str, mode: int, group: int | None = None) -> str:
    """Create `path` empty with `mode` (and `group`), or set them on an existing file. Returns what was done."""
    done = _prepare_mode(path, mode)
    if group is not None:
        done += set_group(path, group)
    return done


def _prepare_mode(path: str, mode: int) -> str:
    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise PrepareError(f"{parent}: cannot create the status directory: {exc.strerror or exc}") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise PrepareError(f"{path}: exists and is not a regular file") from None
        if stat.S_IMODE(st.st_mode) == mode:
            return f"{path}: exists with mode {mode:04o}"
        try:
            os.chmod(path, mode)
        except PermissionError:
            raise PrepareError(
                f"{path}: exists with mode {stat.S_IMODE(st.st_mode):04o}, owned by uid {st.st_uid}, "
                f"and cannot be changed by uid {os.getuid()}"
            ) from None
        return f"{path}: mode set to {mode:04o}"
    except OSError as exc:
        raise PrepareError(f"{path}: cannot create the status file: {exc.strerror or exc}") from None
    os.close(fd)
    os.chmod(path, mode)  # the umask may have taken bits off the mode given to open()
    return f"{path}: created with mode {mode:04o}"
