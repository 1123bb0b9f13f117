from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest

from security.harness import PKI, make_pki, status_v3

USER = "prometheus"
PASSWORD = "scrape: me, please"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def password_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(6)).decode()


@pytest.fixture
def status_config(tmp_path: Path) -> Path:
    """An exporter.yaml over one status file holding one session ("alice")."""
    status = tmp_path / "udp.status"
    status.write_text(status_v3([("alice", "UNDEF", 1234, 5678)]))
    config = tmp_path / "exporter.yaml"
    config.write_text(f"ovpnudpstatus: {status}\nstale_after: 0\n")
    return config
