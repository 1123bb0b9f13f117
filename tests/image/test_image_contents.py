"""What the built images are: metadata, size, user, and what the runtime stage must not carry."""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from imagepod import DOCKER, EXPORTER_UID, POD_LABEL, REPO, docker, image_size, inspect, project_version

SIZE_LIMIT = 60 * 1000 * 1000  # bytes, as docker reports image sizes (MB = 10^6 bytes)
VENV_PYTHON = "/opt/openvpn-exporter/bin/python"
# What the runtime image must not carry: a shell, a package manager, pip, a compiler, the build tree.
FORBIDDEN = (
    "bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash",
    "usr/bin/apt", "usr/bin/apt-get", "usr/bin/dpkg", "usr/bin/perl",
    "usr/bin/pip", "usr/bin/pip3", "usr/bin/gcc", "usr/bin/cc", "usr/bin/make", "var/lib/dpkg/status",
    "var/lib/apt", "var/cache/apt", "root/.cache", "src",
)  # fmt: skip


def _run(image: str, *args: str, entrypoint: str | None = None, volumes: tuple[str, ...] = ()) -> tuple[int, str, str]:
    """Run the image the way a restricted pod would: no network, read-only root, no capabilities."""
    cmd = ["run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL"]
    if entrypoint is not None:
        cmd += ["--entrypoint", entrypoint]
    for v in volumes:
        cmd += ["--volume", v]
    proc = docker(*cmd, image, *args, check=False, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_exporter_image_metadata(images: dict[str, str]) -> None:
    config = inspect(images["exporter"])["Config"]
    assert config["User"] == f"{EXPORTER_UID}:{EXPORTER_UID}"
    assert config["Entrypoint"] == ["openvpn-exporter"]
    assert config["Cmd"] == ["--config.file=/etc/openvpn-exporter/exporter.yaml"]
    assert set(config["ExposedPorts"]) == {"9234/tcp"}
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "openvpn-exporter"
    assert labels["org.opencontainers.image.version"] == project_version()
    assert labels["org.opencontainers.image.licenses"]
    assert labels["org.opencontainers.image.revision"]
    assert labels["org.opencontainers.image.created"]
    # Built with the default BASE_IMAGE and no BASE_DIGEST: a release passes both to pin the base.
    assert labels["org.opencontainers.image.base.name"] == "debian:bookworm-slim"
    assert labels["org.opencontainers.image.base.digest"] == ""


def test_exporter_image_is_under_the_size_limit(images: dict[str, str]) -> None:
    size = image_size(images["exporter"])
    assert size < SIZE_LIMIT, f"{size / 1e6:.1f} MB"


def test_exporter_image_prints_its_version_read_only(images: dict[str, str]) -> None:
    rc, out, err = _run(images["exporter"], "--version")
    assert rc == 0, err
    assert out.strip() == f"openvpn-exporter {project_version()}"


@pytest.fixture(scope="module")
def exporter_files(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, tarfile.TarInfo]:
    """Every path of the exporter image's filesystem, read from `docker export` of a created container."""
    name = f"ovpnexp-files-{Path(tmp_path_factory.getbasetemp()).name}"
    docker("create", "--name", name, images["exporter"])
    try:
        tar_path = tmp_path_factory.mktemp("export") / "rootfs.tar"
        with tar_path.open("wb") as out:
            subprocess.run([DOCKER, "export", name], stdout=out, check=True, timeout=120)
        with tarfile.open(tar_path) as tar:
            return {member.name.rstrip("/"): member for member in tar.getmembers()}
    finally:
        docker("rm", "--force", name, check=False)


def test_runtime_image_has_no_shell_package_manager_or_pip(exporter_files: dict[str, tarfile.TarInfo]) -> None:
    found = [path for path in FORBIDDEN if path in exporter_files]
    assert not found, found
    pip = [path for path in exporter_files if "/site-packages/pip" in path or "/site-packages/setuptools" in path]
    assert not pip, pip[:5]
    # Debian's installed packages are still recorded, one file each, so image scanners can read them.
    recorded = {path.rsplit("/", 1)[1] for path in exporter_files if path.startswith("var/lib/dpkg/status.d/")}
    assert {"libc6", "python3.11-minimal", "libpython3.11-stdlib", "libssl3", "ca-certificates", "tzdata"} <= recorded


def test_runtime_image_holds_only_the_runtime_tree(exporter_files: dict[str, tarfile.TarInfo]) -> None:
    top = {path.split("/", 1)[0] for path in exporter_files}
    # docker export adds its own mount points (.dockerenv, dev, proc, sys, etc/hosts ...).
    allowed = {"bin", "lib", "lib64", "sbin", "usr", "opt", "etc", "var", "tmp", "run"}
    assert top <= allowed | {".dockerenv", "dev", "proc", "sys"}, top
    for path in ("etc/ssl/certs/ca-certificates.crt", "usr/share/zoneinfo/Europe/Berlin", "usr/bin/python3.11"):
        assert path in exporter_files, path
    assert exporter_files["tmp"].mode & 0o1777 == 0o1777
    docs = [p for p, m in exporter_files.items() if p.startswith("usr/share/doc/") and m.isfile()]
    assert docs
    assert all(p.endswith("/copyright") for p in docs), docs


def test_runtime_image_has_no_shell_to_run(images: dict[str, str]) -> None:
    rc, _, err = _run(images["exporter"], "-c", "true", entrypoint="/bin/sh")
    assert rc != 0
    assert "/bin/sh" in err


def test_every_exporter_module_imports_in_the_image(images: dict[str, str]) -> None:
    """The stdlib in the image is cut to what the exporter imports: each of its modules, those that only
    some configurations load too (management source, TLS and basic auth, kumina and extended families),
    must import, and the TLS context must find the CA bundle and OpenSSL's config."""
    script = (
        "import importlib, pkgutil, ssl, exporter, uvicorn\n"
        "for info in pkgutil.walk_packages(exporter.__path__, 'exporter.'):\n"
        "    if info.name != 'exporter.__main__':\n"
        "        importlib.import_module(info.name)\n"
        "uvicorn.Config(lambda scope, receive, send: None, lifespan='on').load()\n"
        "assert ssl.create_default_context().cert_store_stats()['x509_ca'] > 100\n"
        "print('ok')\n"
    )
    rc, out, err = _run(images["exporter"], "-c", script, entrypoint=VENV_PYTHON)
    assert rc == 0, err
    assert out.strip() == "ok"


# What the chart's helm test does with this image: a urllib client, by host name, in the exporter's netns.
_FETCH_BY_NAME = """
import time, urllib.request
for _ in range(100):
    try:
        print(urllib.request.urlopen("http://localhost:9234/metrics", timeout=5).read().decode())
        break
    except OSError:
        time.sleep(0.1)
"""


def test_image_python_fetches_metrics_by_host_name(images: dict[str, str], tmp_path: Path) -> None:
    """Host names go through /etc/hosts and nsswitch.conf, and the idna codec with its unicodedata
    and stringprep: all must be in the image, though the exporter itself listens on a bare port."""
    status_dir = tmp_path / "run-openvpn"
    status_dir.mkdir()
    shutil.copy(REPO / "examples" / "udp.status", status_dir / "udp.status")
    (status_dir / "udp.status").chmod(0o644)
    config = tmp_path / "exporter.yaml"
    config.write_text("ovpnudpstatus: /run/openvpn/udp.status\nstale_after: 0\n")
    config.chmod(0o644)
    name = f"ovpnexp-byname-{tmp_path.name}"[:60]
    docker(
        "run", "--detach", "--label", POD_LABEL, "--name", name, "--network", "none", "--read-only",
        "--user", f"{EXPORTER_UID}:{EXPORTER_UID}", "--cap-drop", "ALL",
        "--volume", f"{status_dir}:/run/openvpn:ro", "--volume", f"{config}:/etc/openvpn-exporter/exporter.yaml:ro",
        images["exporter"],
    )  # fmt: skip
    try:
        proc = docker(
            "run", "--rm", "--network", f"container:{name}", "--read-only", "--cap-drop", "ALL",
            "--user", f"{EXPORTER_UID}:{EXPORTER_UID}", "--entrypoint", "python3", images["exporter"],
            "-c", _FETCH_BY_NAME, check=False, timeout=60,
        )  # fmt: skip
    finally:
        docker("rm", "--force", name, check=False)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^ovpn_sessions_total [1-9]\d*$", proc.stdout, re.MULTILINE), proc.stdout + proc.stderr
    assert re.search(r"^probe_success\{.*\} 1$", proc.stdout, re.MULTILINE), proc.stdout


def test_bad_config_fails_fast_with_one_line(images: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "exporter.yaml"
    bad.write_text("ovpnudpstatus: /run/openvpn/udp.status\nno_such_key: 1\n")
    bad.chmod(0o644)
    rc, _, err = _run(images["exporter"], volumes=(f"{bad}:/etc/openvpn-exporter/exporter.yaml:ro",))
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "no_such_key" in lines[0]


def test_prepare_reports_an_unwritable_directory(images: dict[str, str]) -> None:
    # Without a volume, /run/openvpn is part of the read-only root filesystem.
    rc, _, err = _run(images["exporter"], "prepare", "/run/openvpn/udp.status")
    assert rc == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "/run/openvpn/udp.status" in lines[0]


def test_openvpn_image_runs_openvpn(images: dict[str, str]) -> None:
    config = inspect(images["openvpn"])["Config"]
    assert config["Entrypoint"] == ["/usr/local/bin/openvpn-entrypoint"]
    rc, out, err = _run(images["openvpn"], "--version")
    # openvpn --version exits 1 by design; the banner is what matters.
    assert rc in (0, 1), err
    assert out.startswith("OpenVPN 2.6."), out + err
