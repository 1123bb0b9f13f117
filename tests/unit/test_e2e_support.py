"""The kind suite's helpers (tests/e2e/e2e_support.py, run by kind/e2e.sh as `python -m tests.e2e.e2e_support`),
tested without a cluster."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.common import missing, tool

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.31"


def _load_support() -> ModuleType:
    path = REPO / "tests" / "e2e" / "e2e_support.py"
    spec = importlib.util.spec_from_file_location("e2e_support", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before exec: dataclasses look their module up in sys.modules.
    sys.modules["e2e_support"] = module
    spec.loader.exec_module(module)
    return module


sup = _load_support()


require_or_skip = missing


@pytest.fixture(scope="module")
def pki() -> Any:
    return sup.generate_pki("vpn.example.test", ["alice", "bob"])


# --- PKI -----------------------------------------------------------------------------------------------


def _store(pki: Any) -> verification.Store:
    return verification.Store([pki.ca.cert])


def test_server_certificate_verifies_as_tls_server(pki: Any) -> None:
    verifier = verification.PolicyBuilder().store(_store(pki)).build_server_verifier(x509.DNSName("vpn.example.test"))
    chain = verifier.verify(pki.server.cert, [])
    assert chain[-1] == pki.ca.cert
    eku = pki.server.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_certificates_verify_as_tls_clients(pki: Any) -> None:
    verifier = verification.PolicyBuilder().store(_store(pki)).build_client_verifier()
    for cn in ("alice", "bob"):
        cert = pki.clients[cn].cert
        verified = verifier.verify(cert, [])
        assert verified.chain[-1] == pki.ca.cert
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == cn


def test_client_certificate_is_not_a_server_certificate(pki: Any) -> None:
    # remote-cert-tls server on the client side must reject a client certificate posing as the server.
    verifier = verification.PolicyBuilder().store(_store(pki)).build_server_verifier(x509.DNSName("alice"))
    with pytest.raises(verification.VerificationError):
        verifier.verify(pki.clients["alice"].cert, [])


def test_ca_is_a_ca_and_leaves_are_not(pki: Any) -> None:
    ca = pki.ca.cert
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    ca.verify_directly_issued_by(ca)
    for cert in (pki.server.cert, pki.clients["alice"].cert):
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature is True
        cert.verify_directly_issued_by(ca)


def test_keys_match_certificates(pki: Any) -> None:
    for cred in (pki.ca, pki.server, *pki.clients.values()):
        key = serialization.load_pem_private_key(cred.key_pem.encode(), password=None)
        assert key.public_key() == cred.cert.public_key()


def test_validity_covers_now_and_tolerates_clock_skew() -> None:
    now = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    cert = sup.generate_pki(now=now, days=2).server.cert
    assert cert.not_valid_before_utc <= now - dt.timedelta(minutes=30)
    assert cert.not_valid_after_utc >= now + dt.timedelta(days=2)


def test_every_run_makes_a_fresh_pki() -> None:
    a, b = sup.generate_pki(), sup.generate_pki()
    assert a.ca.cert_pem != b.ca.cert_pem
    assert a.tls_crypt_key != b.tls_crypt_key


def test_tls_crypt_key_format() -> None:
    raw = bytes(range(256))
    text = sup.tls_crypt_key(raw)
    lines = text.strip().splitlines()
    assert lines[0] == "-----BEGIN OpenVPN Static key V1-----"
    assert lines[-1] == "-----END OpenVPN Static key V1-----"
    body = lines[1:-1]
    assert len(body) == 16
    assert all(len(line) == 32 for line in body)
    assert bytes.fromhex("".join(body)) == raw
    with pytest.raises(ValueError, match="256 bytes"):
        sup.tls_crypt_key(b"short")


# --- OpenVPN configurations ----------------------------------------------------------------------------


def _inline_block(config: str, tag: str) -> str:
    start = config.index(f"<{tag}>\n") + len(tag) + 3
    return config[start : config.index(f"</{tag}>")]


def test_server_config_leaves_status_port_and_proto_to_the_chart(pki: Any) -> None:
    config = sup.server_config(pki)
    directives = {line.split()[0] for line in config.splitlines() if line and not line.startswith(("<", "-"))}
    assert not directives & {"status", "status-version", "port", "proto", "daemon"}
    assert "dh none" in config.splitlines()
    assert _inline_block(config, "cert") == pki.server.cert_pem
    assert _inline_block(config, "key") == pki.server.key_pem
    assert _inline_block(config, "ca") == pki.ca.cert_pem
    assert _inline_block(config, "tls-crypt") == pki.tls_crypt_key


def test_client_config_targets_the_service(pki: Any) -> None:
    config = sup.client_config(pki, "bob", "ovpn.ns.svc.cluster.local", port=1195, proto="udp")
    lines = config.splitlines()
    assert "remote ovpn.ns.svc.cluster.local 1195" in lines
    assert "proto udp" in lines
    assert "remote-cert-tls server" in lines
    assert {"ifconfig-noexec", "route-noexec"} <= set(lines)
    assert _inline_block(config, "cert") == pki.clients["bob"].cert_pem
    assert _inline_block(config, "key") == pki.clients["bob"].key_pem
    with pytest.raises(KeyError):
        sup.client_config(pki, "mallory", "x")


# --- manifests -----------------------------------------------------------------------------------------


def test_server_secret_decodes_to_the_pems(pki: Any) -> None:
    secret = sup.server_secret(pki, "srv", "ns")
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["ca.crt"] == pki.ca.cert_pem
    assert data["server.crt"] == pki.server.cert_pem
    assert data["server.key"] == pki.server.key_pem
    assert data["tls-crypt.key"] == pki.tls_crypt_key
    assert data[sup.SERVER_CONFIG_KEY] == sup.server_config(pki)
    assert secret["metadata"] == {"name": "srv", "namespace": "ns", "labels": sup.E2E_LABELS}


def test_client_pod_is_valid_and_gets_a_tun_device() -> None:
    pod = sup.client_pod_manifest("c", "ns", "openvpn-exporter-openvpn:e2e-1", "c-secret")
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    container = pod["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "Never"
    assert container["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    assert "privileged" not in container["securityContext"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["tun"]["hostPath"] == {"path": "/dev/net/tun", "type": "CharDevice"}
    assert volumes["config"]["secret"]["secretName"] == "c-secret"
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert container["args"] == ["--config", f"{config_mount['mountPath']}/{sup.CLIENT_CONFIG_KEY}"]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("openvpn-exporter:e2e-1", ("openvpn-exporter", "e2e-1")),
        ("ghcr.io/o/openvpn-exporter:1.0.0", ("ghcr.io/o/openvpn-exporter", "1.0.0")),
        ("localhost:5000/openvpn-exporter", ("localhost:5000/openvpn-exporter", "latest")),
        ("localhost:5000/x:y", ("localhost:5000/x", "y")),
    ],
)
def test_split_image(ref: str, expected: tuple[str, str]) -> None:
    assert sup.split_image(ref) == expected


def _values() -> dict[str, Any]:
    values: dict[str, Any] = sup.helm_values(
        exporter_image="openvpn-exporter:e2e-1",
        openvpn_image="openvpn-exporter-openvpn:e2e-1",
        server_secret_name="srv",
        server_name="e2e-server",
    )
    return values


def test_values_use_the_loaded_images_and_the_secret() -> None:
    values = _values()
    assert values["exporter"]["image"] == {
        "registry": "",
        "repository": "openvpn-exporter",
        "tag": "e2e-1",
        "pullPolicy": "Never",
    }
    assert values["openvpn"]["image"]["repository"] == "openvpn-exporter-openvpn"
    assert values["openvpn"]["config"]["existingSecret"] == "srv"
    assert values["serviceMonitor"]["enabled"] is True
    # SERVER_NAME_SET_KEY, the key the upgrade test sets, points at the value helm_values sets.
    node: Any = values
    for part in sup.SERVER_NAME_SET_KEY.split("."):
        node = node[part]
    assert node == "e2e-server"


def _chart() -> Path:
    chart = REPO / "chart"
    if not (chart / "Chart.yaml").is_file():
        require_or_skip("chart/ is not there")
    return chart


def test_values_match_the_chart_schema() -> None:
    import jsonschema

    schema_file = _chart() / "values.schema.json"
    if not schema_file.is_file():
        require_or_skip("chart/values.schema.json is not there")
    defaults = yaml.safe_load((_chart() / "values.yaml").read_text())

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {k: merge(base.get(k), over[k]) if k in over else base[k] for k in base | over}
        return over

    jsonschema.validate(merge(defaults, _values()), json.loads(schema_file.read_text()))


def _helm_template(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    helm = tool("helm", "run .ci/install-helm.sh")
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = subprocess.run(
        [helm, "template", "ovpn", str(_chart()), "--namespace", "ovpn-e2e", "-f", str(values_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_chart_renders_with_the_e2e_values(tmp_path: Path) -> None:
    """What the suite will find in the cluster, checked on the rendered chart: the client finds the VPN
    Service, the proxy finds the metrics Service, the ServiceMonitor selects exactly that one."""
    docs = _helm_template(_values(), tmp_path)
    services = {"items": [d for d in docs if d["kind"] == "Service"]}
    vpn = sup.pick_vpn_service(services)
    metrics = sup.pick_metrics_service(services)
    assert (vpn.port, vpn.protocol) == (1194, "UDP")
    assert metrics.service != vpn.service
    assert metrics.port == sup.EXPORTER_PORT

    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 1
    selector = monitors[0]["spec"]["selector"]["matchLabels"]
    selected = [
        s["metadata"]["name"] for s in services["items"] if sup.selector_matches(selector, s["metadata"]["labels"])
    ]
    assert selected == [metrics.service]
    assert monitors[0]["metadata"]["labels"]["release"] == "e2e"
    # What tests/e2e asserts in the cluster: the scrape path is /prom (the exporter's own series included).
    assert [e["path"] for e in monitors[0]["spec"]["endpoints"]] == ["/prom"]

    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    images = {c["image"] for c in [*pod["containers"], *pod.get("initContainers", [])]}
    assert {"openvpn-exporter:e2e-1", "openvpn-exporter-openvpn:e2e-1"} <= images
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert "srv" in secrets
    config_maps = [d for d in docs if d["kind"] == "ConfigMap"]
    exporter_yaml = [yaml.safe_load(v) for cm in config_maps for k, v in cm["data"].items() if k == "exporter.yaml"]
    assert [c["server_name"] for c in exporter_yaml] == ["e2e-server"]


def test_server_name_upgrade_keeps_the_pod_template(tmp_path: Path) -> None:
    """The upgrade test relies on a server_name change reaching the pod without rolling it."""
    before = _helm_template(_values(), tmp_path)
    values = _values()
    values["exporter"]["config"]["serverName"] = "renamed"
    after = _helm_template(values, tmp_path)

    def template(docs: list[dict[str, Any]]) -> Any:
        return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]

    assert template(before) == template(after)


# --- Services ------------------------------------------------------------------------------------------


def _svc(name: str, ports: list[dict[str, Any]], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"ports": ports}}


def test_pick_services() -> None:
    services = {
        "items": [
            _svc("r-metrics", [{"name": "metrics", "port": 9234, "protocol": "TCP"}]),
            _svc(
                "r",
                [
                    {"name": "openvpn-tcp", "port": 443, "protocol": "TCP"},
                    {"name": "openvpn-udp", "port": 1194, "protocol": "UDP"},
                ],
            ),
        ]
    }
    assert sup.pick_vpn_service(services) == sup.ServicePort("r", 1194, "UDP", "openvpn-udp")
    assert sup.pick_vpn_service(services, prefer="tcp") == sup.ServicePort("r", 443, "TCP", "openvpn-tcp")
    assert sup.pick_metrics_service(services) == sup.ServicePort("r-metrics", 9234, "TCP", "metrics")
    only_metrics = {"items": services["items"][:1]}
    with pytest.raises(LookupError):
        sup.pick_vpn_service(only_metrics)
    with pytest.raises(LookupError):
        sup.pick_metrics_service({"items": services["items"][1:]})


def test_selector_matches() -> None:
    labels = {"app": "x", "component": "metrics"}
    assert sup.selector_matches({"component": "metrics"}, labels)
    assert not sup.selector_matches({"component": "vpn"}, labels)
    assert not sup.selector_matches({"missing": "x"}, labels)


# --- Prometheus text -----------------------------------------------------------------------------------


def test_parse_exposition_values_labels_and_comments() -> None:
    text = "\n".join(
        [
            "# HELP probe_success OpenVPN Status",
            "# TYPE probe_success gauge",
            'probe_success{version="2.6.15"} 1',
            "ovpn_sessions_total 0",
            'ovpn_bytes_in_total{client="a_tcp",} 3317 1700000000000',
            "x{} +Inf",
            "",
        ]
    )
    samples = sup.parse_exposition(text)
    assert [(s.name, s.labels, s.raw_value) for s in samples] == [
        ("probe_success", {"version": "2.6.15"}, "1"),
        ("ovpn_sessions_total", {}, "0"),
        ("ovpn_bytes_in_total", {"client": "a_tcp"}, "3317"),
        ("x", {}, "+Inf"),
    ]
    assert samples[2].value == 3317.0
    assert sup.find_samples(samples, "ovpn_bytes_in_total", client="a_tcp") == [samples[2]]
    assert sup.find_samples(samples, "ovpn_bytes_in_total", client="b_tcp") == []


def test_parse_exposition_escaped_label_values() -> None:
    line = r'ovpn_bytes_in_total{client="evil\"},x{y=\"1\" 2\\ \n_udp"} 5'
    (sample,) = sup.parse_exposition(line)
    assert sample.labels == {"client": 'evil"},x{y="1" 2\\ \n_udp'}
    assert sample.value == 5


def test_parse_exposition_agrees_with_prometheus_client() -> None:
    """Hostile client names, written by prometheus_client and read back by both parsers."""
    registry = CollectorRegistry()
    counter = Counter("ovpn_bytes_in", "Total number of bytes received", ["client"], registry=registry)
    gauge = Gauge("ovpn_sessions_total", "Total number of active sessions", registry=registry)
    names = ['a"b_tcp', "back\\slash_udp", "new\nline_tcp", "}{,=_udp", "ünï 😀_tcp"]
    for i, name in enumerate(names):
        counter.labels(client=name).inc(i + 1)
    gauge.set(len(names))
    text = generate_latest(registry).decode()

    ours = {(s.name, tuple(sorted(s.labels.items())), s.value) for s in sup.parse_exposition(text)}
    theirs = {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert ours == theirs
    assert {dict(labels).get("client") for _, labels, _ in ours} >= set(names)


@pytest.mark.parametrize(
    "bad",
    [
        'm{a="1"',  # unterminated
        "m{a=1} 1",  # unquoted value
        'm{a="\\x"} 1',  # unknown escape
        'm{a="1",a="2"} 1',  # duplicate label
        "m",  # no value
        "m one",  # not a number
        "1m 1",  # bad name
        'm{a="1" b="2"} 1',  # missing comma
    ],
)
def test_parse_exposition_rejects_garbage(bad: str) -> None:
    with pytest.raises(sup.ExpositionError):
        sup.parse_exposition(bad)


def test_client_label() -> None:
    assert sup.client_label("e2e-client", "UDP") == "e2e-client_udp"


# --- the command line kind/e2e.sh uses -----------------------------------------------------------------


def test_cli_prepare_then_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    out = tmp_path / "gen"
    rc = sup.main(
        [
            "prepare",
            "--out",
            str(out),
            "--namespace",
            "ns1",
            "--release",
            "rel",
            "--client-cn",
            "carol",
            "--exporter-image",
            "openvpn-exporter:e2e-9",
            "--openvpn-image",
            "openvpn-exporter-openvpn:e2e-9",
        ]
    )
    assert rc == 0
    assert (out / "pki.json").stat().st_mode & 0o777 == 0o600
    (secret,) = yaml.safe_load_all((out / "server-secret.yaml").read_text())
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["metadata"]["name"] == "rel-e2e-openvpn"
    values = yaml.safe_load((out / "values.yaml").read_text())
    assert values["openvpn"]["config"]["existingSecret"] == "rel-e2e-openvpn"
    assert values["exporter"]["image"]["tag"] == "e2e-9"
    server_conf = base64.b64decode(secret["data"][sup.SERVER_CONFIG_KEY]).decode()
    ca_pem = _inline_block(server_conf, "ca")

    services = {
        "items": [
            _svc("rel-openvpn-exporter", [{"name": "openvpn-udp", "port": 1194, "protocol": "UDP"}]),
            _svc("rel-openvpn-exporter-metrics", [{"name": "metrics", "port": 9234, "protocol": "TCP"}]),
        ]
    }
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(services)))
    args = ["client", "--out", str(out), "--namespace", "ns1", "--release", "rel", "--client-cn", "carol"]
    assert sup.main([*args, "--openvpn-image", "openvpn-exporter-openvpn:e2e-9"]) == 0
    assert capsys.readouterr().out.strip() == "rel-openvpn-exporter 1194/UDP"
    client_secret, pod = yaml.safe_load_all((out / "client.yaml").read_text())
    for doc in (client_secret, pod):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    client_conf = base64.b64decode(client_secret["data"][sup.CLIENT_CONFIG_KEY]).decode()
    assert "remote rel-openvpn-exporter.ns1.svc.cluster.local 1194" in client_conf.splitlines()
    # The client trusts the same CA the server was given, and its certificate is carol's, signed by it.
    assert _inline_block(client_conf, "ca") == ca_pem
    cert = x509.load_pem_x509_certificate(_inline_block(client_conf, "cert").encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "carol"
    assert pod["spec"]["volumes"][0]["secret"]["secretName"] == client_secret["metadata"]["name"]
    assert pod["spec"]["containers"][0]["image"] == "openvpn-exporter-openvpn:e2e-9"


def test_runs_as_a_module_from_the_repository_root_as_kind_e2e_sh_does(tmp_path: Path) -> None:
    script = (REPO / "kind" / "e2e.sh").read_text()
    assert '"$PYTHON" -m tests.e2e.e2e_support' in script
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.e2e_support", "prepare", "--out", str(tmp_path),
         "--exporter-image", "openvpn-exporter:e2e-9", "--openvpn-image", "openvpn-exporter-openvpn:e2e-9"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"pki.json", "server-secret.yaml", "values.yaml"}
