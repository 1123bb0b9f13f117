"""What the built images are: metadata, size, user, and what the runtime stage must not carry."""

from __future__ import annotations

from pathlib import Path

from imagepod import EXPORTER_UID, docker, image_size, inspect, project_version

SIZE_LIMIT = 130 * 1000 * 1000  # bytes, as docker reports image sizes (MB = 10^6 bytes)


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


def test_exporter_image_is_under_the_size_limit(images: dict[str, str]) -> None:
    size = image_size(images["exporter"])
    assert size < SIZE_LIMIT, f"{size / 1e6:.1f} MB"


def test_exporter_image_prints_its_version_read_only(images: dict[str, str]) -> None:
    rc, out, err = _run(images["exporter"], "--version")
    assert rc == 0, err
    assert out.strip() == f"openvpn-exporter {project_version()}"


def test_runtime_stage_has_no_pip_compiler_or_apt_caches(images: dict[str, str]) -> None:
    script = (
        "for t in pip pip3 gcc cc c++ make; do command -v $t && echo FOUND $t; done;"
        " python3 -c 'import pip' 2>/dev/null && echo FOUND pip-module;"
        " /opt/openvpn-exporter/bin/python -c 'import pip' 2>/dev/null && echo FOUND venv-pip;"
        " find /var/lib/apt/lists /var/cache/apt /root/.cache -mindepth 1 2>/dev/null | grep . && echo FOUND;"
        " test -e /src && echo FOUND src;"
        " exit 0"
    )
    rc, out, err = _run(images["exporter"], "-c", script, entrypoint="/bin/sh")
    assert rc == 0, err
    assert "FOUND" not in out, out


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
