"""exporter.webconfig without a network: parsing, the basic-auth middleware, the TLS reloader."""

from __future__ import annotations

import base64
import importlib.util
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import bcrypt
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from exporter import auth as authmodule
from exporter import webconfig
from exporter.app import create_app
from exporter.auth import BasicAuth
from exporter.config import parse_config
from exporter.webconfig import ReloadingTLS, WebConfigError, parse_web_config, server_options

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HARNESS = Path(__file__).resolve().parents[1] / "security" / "harness.py"
PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def _harness() -> ModuleType:
    """The security suite's PKI helper, loaded by path (the test directories are not one package)."""
    spec = importlib.util.spec_from_file_location("security_harness", HARNESS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _ok(_: object) -> PlainTextResponse:
    return PlainTextResponse("data")


@pytest.fixture
def guarded() -> Iterator[tuple[TestClient, BasicAuth]]:
    routes = [Route(p, _ok) for p in ("/metrics", "/sessions", "/-/healthy", "/-/ready", "/-/healthyx")]
    auth = BasicAuth(Starlette(routes=routes), users={"prom": HASH.encode()})
    with TestClient(auth) as client:
        yield client, auth


# -------------------------------------------------------------------------------------------- parsing


def test_empty_file_means_plain_http_without_auth() -> None:
    web = parse_web_config("", "w.yml")
    assert web.tls is None
    assert web.users == {}
    middleware, options = server_options(web)
    assert options == {}
    # The basic-auth layer is there, with no users, so that a reload can add some; it lets all through.
    assert [m.cls for m in middleware] == [BasicAuth]


def test_users_parsed_and_client_ca_defaults_to_require_and_verify(tmp_path: Path) -> None:
    web = parse_web_config(f"basic_auth_users:\n  prom: '{HASH}'\n", "w.yml")
    assert web.users == {"prom": HASH.encode()}
    text = "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_ca_file: ca.crt\n"
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file: .*a\.crt does not exist"):
        parse_web_config(text, str(tmp_path / "w.yml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config: [1]\n", r"w\.yml: tls_server_config: expected a mapping"),
        ("basic_auth_user: {}\n", r"w\.yml: basic_auth_user: unknown key"),
        ("tls_server_config:\n  cert_file: a\n", r"tls_server_config\.key_file: missing"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
         r"tls_server_config\.client_auth_type: expected one of NoClientCert, .*, got 'Sometimes'"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
         r"tls_server_config\.client_ca_file: missing; RequireAnyClientCert needs the CA .* verifies every"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n",
         r"tls_server_config\.client_ca_file: missing"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n",
         r"tls_server_config\.min_version: expected one of TLS10, TLS11, TLS12, TLS13, got 'TLS14'"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
         r"max_version: TLS12 is below min_version TLS13"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
         r"cipher_suites: expected one of TLS_ECDHE_.*, got 'TLS_RSA_WITH_RC4_128_SHA'"),
        ("tls_server_config:\n  cert: inline\n", r"tls_server_config\.cert: not supported"),
        ("basic_auth_users:\n  prom: plaintext\n", r"basic_auth_users\.prom: expected a bcrypt hash"),
        ("basic_auth_users:\n  'a:b': '" + HASH + "'\n", r"basic_auth_users\.a:b: a user name"),
        ("basic_auth_users: [prom]\n", r"basic_auth_users: expected a mapping"),
        ("basic_auth_users:\n  prom: '$2b$03$" + HASH[7:] + "'\n", r"basic_auth_users\.prom: the bcrypt cost is 03"),
        ("basic_auth_users:\n  prom: '$2b$99$" + HASH[7:] + "'\n", r"basic_auth_users\.prom: the bcrypt cost is 99"),
        ("basic_auth_users:\n  prom: x\n  prom: y\n", r"w\.yml: line 3, column 3: the key 'prom' appears twice"),
        ("http_server_config:\n  headers:\n    Set-Cookie: x\n", r"headers\.Set-Cookie: this header cannot"),
        ("key: [unclosed\n", r"w\.yml: line 2, column 1: YAML syntax error"),
    ],
)  # fmt: skip
def test_bad_web_config_is_one_line_naming_file_and_key(text: str, message: str) -> None:
    with pytest.raises(WebConfigError, match=message) as caught:
        parse_web_config(text, "w.yml")
    assert "\n" not in str(caught.value)


def test_missing_file_named(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="not found"):
        webconfig.load_web_config(str(tmp_path / "nope.yml"))


# ----------------------------------------------------------------------------------------- basic auth


def test_every_auth_case(guarded: tuple[TestClient, BasicAuth]) -> None:
    client, _ = guarded
    cases = {
        "no header": {},
        "wrong user": basic("root", PASSWORD),
        "wrong password": basic("prom", "wrong"),
        "empty password": basic("prom", ""),
        "user prefix": basic("pro", PASSWORD),
        "password prefix": basic("prom", PASSWORD[:-1]),
        "password with extra": basic("prom", PASSWORD + "x"),
        "over 72 bytes sharing the prefix": basic("prom", PASSWORD + "y" * 80),
        "not base64": {"Authorization": "Basic !!!notbase64"},
        "no colon": {"Authorization": "Basic " + base64.b64encode(b"prom").decode()},
        "other scheme": {"Authorization": "Bearer " + base64.b64encode(f"prom:{PASSWORD}".encode()).decode()},
        "scheme only": {"Authorization": "Basic"},
        "binary garbage": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\x00\x01").decode()},
    }
    for name, headers in cases.items():
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"] == 'Basic realm="openvpn-exporter"', name
        assert response.text == "Unauthorized\n"
    good = client.get("/metrics", headers=basic("prom", PASSWORD))
    assert (good.status_code, good.text) == (200, "data")
    assert (
        client.get(
            "/metrics", headers={"Authorization": "basic " + basic("prom", PASSWORD)["Authorization"][6:]}
        ).status_code
        == 200
    )


def test_health_endpoints_are_open_and_nothing_else(guarded: tuple[TestClient, BasicAuth]) -> None:
    client, _ = guarded
    assert client.get("/-/healthy").status_code == 200
    assert client.get("/-/ready").status_code == 200
    assert client.get("/-/healthyx").status_code == 401
    assert client.get("/sessions").status_code == 401
    assert client.get("/-/healthy/../metrics").status_code in (401, 404)


def test_good_credentials_cached_failures_never(
    guarded: tuple[TestClient, BasicAuth], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, auth = guarded
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(authmodule.bcrypt, "checkpw", counting)
    for _ in range(5):
        assert client.get("/metrics", headers=basic("prom", PASSWORD)).status_code == 200
    assert len(calls) == 1
    for _ in range(3):
        assert client.get("/metrics", headers=basic("prom", "bad")).status_code == 401
    assert len(calls) == 4
    # An unknown user still pays exactly one bcrypt, against the dummy hash of the same cost.
    assert client.get("/metrics", headers=basic("nobody", "bad")).status_code == 401
    assert len(calls) == 5
    assert calls[-1] == auth.passwords._users.dummy
    assert calls[-1][:7] == HASH.encode()[:7]  # "$2b$04$": same algorithm and cost


def test_unknown_user_costs_as_much_as_a_wrong_password(guarded: tuple[TestClient, BasicAuth]) -> None:
    _, auth = guarded

    def timed(user: bytes) -> float:
        started = time.perf_counter()
        for _ in range(20):
            assert not auth.passwords.verify(user, b"wrong")
        return time.perf_counter() - started

    known, unknown = timed(b"prom"), timed(b"mallory")
    assert 0.5 < unknown / known < 2.0


def test_cache_is_bounded(guarded: tuple[TestClient, BasicAuth], monkeypatch: pytest.MonkeyPatch) -> None:
    client, auth = guarded
    monkeypatch.setattr(authmodule, "AUTH_CACHE_SIZE", 3)
    monkeypatch.setattr(auth.passwords, "verify", lambda user, password, users: True)
    for i in range(10):
        assert client.get("/metrics", headers=basic("prom", f"p{i}")).status_code == 200
    assert len(auth.passwords._users.good) <= 3


# ----------------------------------------------------------------------------------- response headers


def test_pages_carry_security_headers(tmp_path: Path) -> None:
    status = tmp_path / "udp.status"
    status.write_bytes((FIXTURES / "captured-2.6.14" / "server-udp-status-v3.log").read_bytes())
    config = parse_config(f"ovpnudpstatus: {status}\nstale_after: 0\n", "exporter.yaml")
    with TestClient(create_app(config)) as client:
        for path in ("/", "/static", "/sessions", "/sessions_local", "/metrics", "/prom", "/nope"):
            response = client.get(path)
            assert response.headers["x-content-type-options"] == "nosniff", path
        for path in ("/", "/static"):
            csp = client.get(path).headers["content-security-policy"]
            assert "default-src 'none'" in csp
            assert "unsafe-inline" not in csp
            assert "script-src" not in csp
            assert "<script" not in client.get(path).text
        for path in ("/sessions", "/sessions_local", "/static"):
            assert client.get(path).headers["cache-control"] == "no-store", path
        assert client.get("/-/healthy").text == "OK"
        assert client.get("/-/ready").text == "OK"


# --------------------------------------------------------------------------------------------- TLS files


def test_reloader_keeps_old_context_on_a_half_written_pair(tmp_path: Path) -> None:
    pki = _harness().make_pki(tmp_path / "pki")
    text = f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
    web = parse_web_config(text, str(tmp_path / "w.yml"))
    assert web.tls is not None
    reloader = ReloadingTLS(web.tls, web.path)
    assert reloader.check() is reloader.context
    assert reloader.context.minimum_version == ssl.TLSVersion.TLSv1_2
    # New certificate, old key: cannot load; the old context keeps serving and nothing is retried
    # until the files move again.
    pki.issue_server(pki.server.cert, tmp_path / "unused.key", "renewed")
    assert reloader.check() is reloader.context
    assert reloader.reloads == 0
    (tmp_path / "unused.key").replace(pki.server.key)
    fresh = reloader.check()
    assert fresh is not reloader.context
    assert reloader.reloads == 1
    assert reloader.check() is fresh
