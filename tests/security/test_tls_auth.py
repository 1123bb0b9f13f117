"""TLS and basic auth on the real exporter process, with real TLS clients (python ssl, httpx)."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from security.conftest import PASSWORD, USER
from security.harness import PKI, Exporter, Identity, client_context, run_exporter, start_exporter
from tests.support.common import LOOPBACK

ENDPOINTS = ("/", "/metrics", "/prom", "/static", "/sessions", "/sessions_local", "/assets/style.css")


def web_config(
    path: Path, pki: PKI, *, auth_type: str = "", users: dict[str, str] | None = None, extra: str = ""
) -> Path:
    lines = ["tls_server_config:", f"  cert_file: {pki.server.cert}", f"  key_file: {pki.server.key}"]
    if auth_type:
        lines += [f"  client_auth_type: {auth_type}", f"  client_ca_file: {pki.ca}"]
    if users:
        lines += ["basic_auth_users:", *(f"  {u}: '{h}'" for u, h in users.items())]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def raw_get(port: int, ctx: ssl.SSLContext, path: str = "/-/healthy") -> bytes:
    """One HTTP/1.1 request over a fresh TLS connection; raises on a refused handshake."""
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname=LOOPBACK) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True when the server ends the connection without answering (TLS 1.3 reports a bad client
    certificate only after the handshake, at the first read)."""
    try:
        return not raw_get(port, ctx).startswith(b"HTTP/1.1 200")
    except (ssl.SSLError, ConnectionError, OSError):
        return True


def served_certificate(port: int, ctx: ssl.SSLContext) -> x509.Certificate:
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname=LOOPBACK) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.fixture
def tls_auth_exporter(tmp_path: Path, pki: PKI, password_hash: str, status_config: Path) -> Iterator[Exporter]:
    web = web_config(tmp_path / "web.yml", pki, users={USER: password_hash, "other": password_hash})
    exporter = start_exporter(tmp_path, status_config, web_config=web, ready_client={"verify": client_context(pki)})
    yield exporter
    exporter.stop()


def test_tls_with_basic_auth_every_case(tls_auth_exporter: Exporter, pki: PKI) -> None:
    url = tls_auth_exporter.url
    assert url.startswith("https://")
    with httpx.Client(verify=client_context(pki), timeout=10) as client:
        for path in ENDPOINTS:
            response = client.get(url + path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == 'Basic realm="openvpn-exporter"'
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "alice" not in response.text
        assert client.get(url + "/nope").status_code == 401  # even a 404 is not told to strangers
        bad = [
            (USER, "wrong"),
            ("root", PASSWORD),
            ("other ", PASSWORD),
            (USER.upper(), PASSWORD),
            (USER, PASSWORD + " "),
            (USER, ""),
        ]
        for user, password in bad:
            assert client.get(url + "/metrics", auth=(user, password)).status_code == 401, (user, password)
        for header in ("Basic", "Basic ???", "Basic cHJvbWV0aGV1cw==", "Digest username=x", "Basic " + "A" * 9000):
            assert client.get(url + "/metrics", headers={"Authorization": header}).status_code in (401, 431)
        for path in ("/-/healthy", "/-/ready"):
            response = client.get(url + path)
            assert (response.status_code, response.text) == (200, "OK")
        for user in (USER, "other"):
            for path in ENDPOINTS:
                assert client.get(url + path, auth=(user, PASSWORD)).status_code == 200, (user, path)
        metrics = client.get(url + "/metrics", auth=(USER, PASSWORD)).text
        assert 'ovpn_bytes_in_total{client="alice_udp"} 1234' in metrics
        sessions = client.get(url + "/sessions", auth=(USER, PASSWORD))
        assert sessions.headers["cache-control"] == "no-store"
        assert sessions.json()[0]["remoteid"] == "alice"
        page = client.get(url + "/static", auth=(USER, PASSWORD))
        assert "script-src" not in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert client.get(url + "/nope", auth=(USER, PASSWORD)).status_code == 404
    # Plain HTTP on the TLS port gets no data.
    with pytest.raises(httpx.HTTPError), httpx.Client(timeout=5) as plain:
        plain.get(f"http://{LOOPBACK}:{tls_auth_exporter.port}/metrics").raise_for_status()
    # A client that does not trust the exporter's CA refuses it; one that does checks the name.
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=5) as untrusting:
        untrusting.get(url + "/-/healthy")
    assert tls_auth_exporter.proc.poll() is None
    assert "Traceback" not in tls_auth_exporter.stderr()


def test_old_tls_versions_refused(tmp_path: Path, pki: PKI, status_config: Path) -> None:
    web = web_config(tmp_path / "web.yml", pki, extra="")
    web.write_text(web.read_text().replace("tls_server_config:\n", "tls_server_config:\n  min_version: TLS13\n"))
    exporter = start_exporter(tmp_path, status_config, web_config=web, ready_client={"verify": client_context(pki)})
    try:
        tls12 = client_context(pki)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert refused(exporter.port, tls12)
        assert raw_get(exporter.port, client_context(pki)).startswith(b"HTTP/1.1 200")
    finally:
        exporter.stop()


@pytest.mark.parametrize("auth_type", ["RequireAndVerifyClientCert", "RequireAnyClientCert"])
def test_client_certificates_required_and_verified(
    tmp_path: Path, pki: PKI, status_config: Path, auth_type: str
) -> None:
    # RequireAnyClientCert (offered by the chart, as exporter-toolkit has it) requires a certificate
    # too; Python's TLS verifies what it requires, so it is verified against client_ca_file.
    web = web_config(tmp_path / "web.yml", pki, auth_type=auth_type)
    good = client_context(pki, pki.client)
    exporter = start_exporter(tmp_path, status_config, web_config=web, ready_client={"verify": good})
    try:
        assert refused(exporter.port, client_context(pki))  # no certificate
        assert refused(exporter.port, client_context(pki, pki.stranger))  # a CA the exporter does not trust
        assert refused(exporter.port, client_context(pki, Identity(pki.server.cert, pki.server.key)))  # no clientAuth
        assert raw_get(exporter.port, good).startswith(b"HTTP/1.1 200")
        with httpx.Client(verify=good, timeout=5) as client:
            assert client.get(exporter.url + "/metrics").status_code == 200
    finally:
        exporter.stop()


def test_client_certificate_verified_if_given(tmp_path: Path, pki: PKI, status_config: Path) -> None:
    web = web_config(tmp_path / "web.yml", pki, auth_type="VerifyClientCertIfGiven")
    exporter = start_exporter(tmp_path, status_config, web_config=web, ready_client={"verify": client_context(pki)})
    try:
        assert raw_get(exporter.port, client_context(pki)).startswith(b"HTTP/1.1 200")
        assert raw_get(exporter.port, client_context(pki, pki.client)).startswith(b"HTTP/1.1 200")
        assert refused(exporter.port, client_context(pki, pki.stranger))
    finally:
        exporter.stop()


def test_renewed_certificate_served_without_restart(tmp_path: Path, pki: PKI, status_config: Path) -> None:
    # The exporter's own copy of the files, renewed in place the way a mounted Secret is updated.
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n")  # relative paths
    ctx = client_context(pki)
    exporter = start_exporter(tmp_path, status_config, web_config=web, ready_client={"verify": ctx})
    try:
        first = served_certificate(exporter.port, ctx)
        assert first.subject.rfc4514_string() == "CN=server one"
        pki.issue_server(cert, tmp_path / "new.key", "server two")  # new certificate, key not yet
        time.sleep(0.02)
        assert served_certificate(exporter.port, ctx).serial_number == first.serial_number  # old pair kept
        (tmp_path / "new.key").replace(key)
        deadline = time.monotonic() + 5
        while (renewed := served_certificate(exporter.port, ctx)).serial_number == first.serial_number:
            assert time.monotonic() < deadline, "renewed certificate not served"
            time.sleep(0.05)
        assert renewed.subject.rfc4514_string() == "CN=server two"
        assert raw_get(exporter.port, ctx, "/metrics").startswith(b"HTTP/1.1 200")
        assert exporter.proc.poll() is None
        assert "TLS certificate reloaded" in exporter.stderr()
    finally:
        exporter.stop()


def bad_config_cases(tmp: Path, pki: PKI) -> list[tuple[str, str, str]]:
    """(web config text or "", file name, expected fragment of the one-line message)."""
    cert, key, ca = pki.server.cert, pki.server.key, pki.ca
    return [
        ("", "missing.yml", "missing.yml: web config file not found"),
        ("tls_server_config: {cert_file: a\n", "syntax.yml", "syntax.yml: line 2, column 1: YAML syntax error"),
        ("tls_server_configs: {}\n", "unknown.yml", "unknown.yml: tls_server_configs: unknown key"),
        (f"tls_server_config:\n  cert_file: {cert}\n", "nokey.yml", "tls_server_config.key_file: missing"),
        (f"tls_server_config:\n  cert_file: {tmp}/gone.crt\n  key_file: {key}\n", "gone.yml",
         f"tls_server_config.cert_file: {tmp}/gone.crt does not exist"),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {pki.client.key}\n", "mismatch.yml",
         "tls_server_config.cert_file/key_file: cannot load"),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: Always\n", "auth.yml",
         "tls_server_config.client_auth_type: expected one of NoClientCert, RequestClientCert, RequireAnyClientCert"),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {cert}.x\n", "ca.yml",
         "tls_server_config.client_ca_file:"),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: "
         "RequireAndVerifyClientCert\n", "noca.yml", "tls_server_config.client_ca_file: missing"),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: SSL3\n", "version.yml",
         "tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13, got 'SSL3'"),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAnyClientCert\n",
         "anycert.yml", "tls_server_config.client_ca_file: missing; RequireAnyClientCert needs the CA"),
        (f"tls_server_config:\n  cert_file: {ca}\n  key_file: {ca}\n", "notkey.yml", "cannot load"),
        ("basic_auth_users:\n  prom: secret\n", "plain.yml", "basic_auth_users.prom: expected a bcrypt hash"),
        ("basic_auth_users: secret\n", "users.yml", "basic_auth_users: expected a mapping"),
        ("basic_auth_users:\n  prom: '$2b$99$" + "a" * 53 + "'\n", "cost.yml", "the bcrypt cost is 99"),
        ("basic_auth_users: &u [*u]\n", "alias.yml", "an alias refers to a node that contains it"),
    ]  # fmt: skip


def test_bad_web_config_exits_2_with_one_line(tmp_path: Path, pki: PKI, status_config: Path) -> None:
    cases = bad_config_cases(tmp_path, pki)
    for text, name, _ in cases:
        if text:
            (tmp_path / name).write_text(text)

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return run_exporter(
            [
                f"--config.file={status_config}",
                f"--web.config.file={tmp_path / name}",
                "--web.listen-address=127.0.0.1:0",
            ]
        )

    with ThreadPoolExecutor(max_workers=6) as pool:  # a second each, mostly interpreter start-up
        results = list(pool.map(run, [name for _, name, _ in cases]))
    for (_, name, expected), result in zip(cases, results, strict=True):
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith(f"openvpn-exporter: {tmp_path / name}"), (name, lines[0])
        assert expected in lines[0], (name, lines[0])
        assert "Traceback" not in result.stderr


def test_a_reload_applies_new_certificate_files_and_users(
    tmp_path: Path, pki: PKI, status_config: Path, password_hash: str
) -> None:
    web = web_config(tmp_path / "web.yml", pki, users={USER: password_hash})
    ctx = client_context(pki)
    exporter = start_exporter(tmp_path, status_config, web_config=web, ready_client={"verify": ctx})
    try:
        first = served_certificate(exporter.port, ctx)
        cert, key = tmp_path / "other.crt", tmp_path / "other.key"
        pki.issue_server(cert, key, "server elsewhere")
        other_hash = password_hash  # same password, another user name
        web.write_text(
            f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\nbasic_auth_users:\n  other: '{other_hash}'\n"
        )
        exporter.signal(signal.SIGHUP)
        exporter.wait_until(lambda: "configuration reloaded" in exporter.stderr(), "the reload")
        served = served_certificate(exporter.port, ctx)
        assert served.serial_number != first.serial_number
        assert served.subject.rfc4514_string() == "CN=server elsewhere"
        with httpx.Client(verify=ctx, timeout=10) as client:
            assert client.get(exporter.url + "/metrics", auth=(USER, PASSWORD)).status_code == 401
            assert client.get(exporter.url + "/metrics", auth=("other", PASSWORD)).status_code == 200
        # What is fixed per connection is refused by a reload, with the restart named; nothing changes.
        web.write_text(web.read_text().replace("tls_server_config:\n", "tls_server_config:\n  min_version: TLS13\n"))
        exporter.signal(signal.SIGHUP)
        exporter.wait_until(lambda: "min_version: changed; restart" in exporter.stderr(), "the rejected reload")
        assert served_certificate(exporter.port, ctx).serial_number == served.serial_number
    finally:
        exporter.stop()
