"""Assemble the exporter image's runtime root filesystem from the builder stage's Debian packages.

    python3 image/rootfs.py VENV ROOTFS STATUS_FILE

Runs in the Dockerfile's builder stage, as root, once the venv is complete. The result holds what the
exporter runs and nothing else: Debian's interpreter, the stdlib modules the exporter imports (found by
running it, not by a list kept by hand), the shared libraries those need (found with ldd), the venv, CA
certificates, tzdata, and the dpkg records of the packages the files come from, so that image scanners
can still tell which Debian package versions it carries. No shell, no apt, no dpkg.

Every file is copied from the builder's own installed packages, so a rebuild picks up Debian's security
updates with no change here. Bytecode is compiled "unchecked-hash": the root filesystem is read-only and
immutable, so Python never needs to compare a .pyc with its source.
"""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

STDLIB = Path(f"/usr/lib/python3.{sys.version_info.minor}")
# Looked up by name at run time (codecs.lookup), never by an import statement: keep the whole package.
WHOLE_PACKAGES = ("encodings",)
# Data files beside the code, copied with their symlinks.
DATA = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/usr/lib/ssl/cert.pem",
    "/usr/lib/ssl/openssl.cnf",
    "/usr/share/zoneinfo",
    "/etc/os-release",
)
ACCOUNTS = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"
PATHS = ("/", "/metrics", "/prom", "/static", "/sessions", "/sessions_local", "/assets/style.css", "/-/ready")

# Imports every stdlib module that the venv's code (the exporter and its dependencies) names in an import
# statement anywhere, function bodies included: the ones only an error path or some configuration loads
# too (difflib for a misspelt config key). Then every module of the exporter, and uvicorn's
# implementations, which it imports by name.
IMPORT_ALL = """
import ast, importlib, pathlib, pkgutil, sys, sysconfig
names = set()
for path in pathlib.Path(sysconfig.get_paths()["purelib"]).rglob("*.py"):
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
        continue
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
for name in sorted(names):
    if name.split(".")[0] in sys.stdlib_module_names:
        try:
            importlib.import_module(name)
        except Exception:  # another platform's module, or a name that is not a module
            pass
import exporter, uvicorn
for info in pkgutil.walk_packages(exporter.__path__, "exporter."):
    if info.name != "exporter.__main__":  # that one runs the command
        importlib.import_module(info.name)
uvicorn.Config(lambda scope, receive, send: None, lifespan="on").load()
print("\\n".join(sys.modules))
"""


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"rootfs: {' '.join(argv)[:200]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def imported_names(stderr: str) -> set[str]:
    """Module names from PYTHONPROFILEIMPORTTIME output ("import time: self | cumulative | name")."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_tls_and_auth(work: Path, venv: Path) -> Path:
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-keyout", str(work / "tls.key"), "-out", str(work / "tls.crt"))  # fmt: skip
    make_hash = "import bcrypt; print(bcrypt.hashpw(b'pw', bcrypt.gensalt(4)).decode())"
    hashed = run(str(venv / "bin/python"), "-c", make_hash)
    web = work / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
        f"basic_auth_users:\n  probe: {json.dumps(hashed.stdout.strip())}\n"
    )
    return web


def exercise(venv: Path, status: Path) -> set[str]:
    """Run the exporter the ways it runs in a pod and return every module it imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    names = set(run(str(venv / "bin/python"), "-c", IMPORT_ALL).stdout.split())
    cli = str(venv / "bin/openvpn-exporter")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        names |= imported_names(run(cli, "--version", env=env).stderr)
        names |= imported_names(run(cli, "prepare", str(work / "prepared.status"), env=env).stderr)
        shutil.copy(status, work / "udp.status")
        (work / "exporter.yaml").write_text(
            f"sources:\n  - {{name: udp, path: {work}/udp.status, protocol: udp}}\n"
            f"  - {{name: mgmt, management: {work}/absent.sock, protocol: tcp}}\n"
            "stale_after: 0\nmetrics: {extended: true, kumina_compat: true}\n"
        )
        web = _make_tls_and_auth(work, venv)
        port = _free_port()
        argv = [cli, f"--web.listen-address=127.0.0.1:{port}", f"--config.file={work}/exporter.yaml"]
        with open(work / "stderr", "w+") as err:
            proc = subprocess.Popen([*argv, f"--web.config.file={web}"], env=env, stderr=err, cwd=work)
            try:
                _scrape(port)
                proc.send_signal(signal.SIGHUP)
                time.sleep(0.5)
                _scrape(port)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
            err.seek(0)
            names |= imported_names(err.read())
    return names


def _scrape(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 30
    for path in PATHS:
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}{path}",
            headers={"Authorization": "Basic cHJvYmU6cHc=", "Accept-Encoding": "gzip"},  # probe:pw
        )
        while True:
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as response:  # noqa: S310
                    response.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def module_files(venv: Path, names: set[str]) -> set[Path]:
    """The stdlib files (.py and extension modules) behind `names`, as the venv's interpreter finds them."""
    script = (
        "import importlib, json, sys\n"
        "out = []\n"
        "for name in json.load(sys.stdin):\n"
        "    try:\n"
        "        module = importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    out.append(getattr(module, '__file__', None))\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [str(venv / "bin/python"), "-c", script], input=json.dumps(sorted(names)), capture_output=True,
        text=True, check=True, timeout=120,
    )  # fmt: skip
    found = {Path(f) for f in json.loads(proc.stdout) if f}
    for package in WHOLE_PACKAGES:
        found |= set((STDLIB / package).glob("*.py"))
    found.add(STDLIB / "os.py")  # the landmark by which Python finds its stdlib
    return {f for f in found if f.is_relative_to(STDLIB)}


def copy_path(path: str | Path, rootfs: Path) -> None:
    """Copy `path` into `rootfs` at the same place: every symlink on the way is recreated (merged /usr,
    soname links) and followed, then the file or whole directory it ends at is copied."""
    parts = Path(path).parts[1:]
    current = Path("/")
    for index, part in enumerate(parts):
        current = current / part
        if current.is_symlink():
            link = os.readlink(current)
            target = rootfs / current.relative_to("/")
            if not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(link)
            # Only this component can be a link still: the ones before it were real directories.
            resolved = Path(os.path.normpath(current.parent / link))
            copy_path(resolved.joinpath(*parts[index + 1 :]), rootfs)
            return
    target = rootfs / current.relative_to("/")
    if current.is_dir():
        shutil.copytree(current, target, symlinks=True, dirs_exist_ok=True)
    elif not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(current, target)


def shared_libraries(binaries: list[Path]) -> set[str]:
    """Every library the dynamic loader maps for these ELF files, the loader included."""
    libraries: set[str] = set()
    for binary in binaries:
        for line in run("ldd", str(binary)).stdout.splitlines():
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                libraries.add(match.group(1))
    return libraries


def owning_packages(paths: list[str]) -> set[str]:
    """The Debian packages that ship these paths (asked under both spellings of merged /usr)."""
    candidates: set[str] = set()
    for path in paths:
        real = os.path.realpath(path)
        candidates |= {path, real, re.sub(r"^/usr(?=/lib/|/bin/|/sbin/)", "", real)}
    # Exit status 1 only says that some spelling is unknown to dpkg; the others are still listed.
    proc = subprocess.run(["dpkg-query", "-S", *sorted(candidates)], capture_output=True, text=True, check=False)
    packages: set[str] = set()
    for line in proc.stdout.splitlines():
        if ": " in line and not line.startswith("diversion"):
            packages.update(p.strip().split(":")[0] for p in line.split(": ", 1)[0].split(","))
    return packages


def record_packages(packages: set[str], rootfs: Path) -> None:
    """dpkg's record of each package (status.d, as distroless images have it) and its copyright."""
    status_dir = rootfs / "var/lib/dpkg/status.d"
    status_dir.mkdir(parents=True, exist_ok=True)
    for package in sorted(packages):
        (status_dir / package).write_text(run("dpkg-query", "-s", package).stdout)
        copyright_file = Path(f"/usr/share/doc/{package}/copyright")
        if copyright_file.is_file():
            copy_path(copyright_file, rootfs)


def main() -> int:
    venv, rootfs, status = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    python = Path(os.path.realpath(venv / "bin/python"))
    names = exercise(venv, status)
    stdlib = module_files(venv, names)
    for source in sorted(stdlib):
        if source.suffix == ".py":
            py_compile.compile(
                str(source), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
            )
            copy_path(importlib.util.cache_from_source(str(source)), rootfs)
        copy_path(source, rootfs)
    copy_path(venv, rootfs)
    copy_path(python, rootfs)
    copy_path("/usr/bin/python3", rootfs)
    elves = [python, *(f for f in stdlib if f.suffix == ".so"), *venv.rglob("*.so")]
    libraries = shared_libraries(elves)
    for path in sorted(libraries):
        copy_path(path, rootfs)
    for path in DATA:
        copy_path(path, rootfs)
    # The CA bundle is generated from ca-certificates' files, so dpkg names no owner for it.
    packages = owning_packages([str(python), *map(str, stdlib), *sorted(libraries), *DATA]) | {"ca-certificates"}
    record_packages(packages, rootfs)
    (rootfs / "etc/passwd").write_text(ACCOUNTS)
    (rootfs / "etc/group").write_text(GROUP)
    (rootfs / "etc/nsswitch.conf").write_text(NSSWITCH)
    for directory, mode in (("tmp", 0o1777), ("etc/openvpn-exporter", 0o755), ("run/openvpn", 0o755)):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
        (rootfs / directory).chmod(mode)
    print(f"rootfs: {len(stdlib)} stdlib files, {len(libraries)} shared libraries, python {python}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
