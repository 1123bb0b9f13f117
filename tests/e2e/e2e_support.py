"""Helpers for the kind end-to-end suite.

Everything here is plain data manipulation so it can be unit-tested without a cluster:

- a throw-away PKI (EC P-256 CA, server and client certificates, tls-crypt key) made with `cryptography`;
- the OpenVPN server and client configurations, the Secrets carrying them, the client Pod;
- the Helm values file the suite installs the chart with;
- choosing the VPN and metrics Services out of `kubectl get svc -o json`;
- a parser for the Prometheus text exposition format the suite scrapes.

It is also a small command line used by kind/e2e.sh (`python -m tests.e2e.e2e_support --help`, run from the
repository root), so the shell script never has to assemble YAML or certificates itself.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.pki import Authority, Credential, tls_crypt_key

# ---------------------------------------------------------------------------------------------------------
# Names shared by kind/e2e.sh, the values file and the tests. Overridable through the environment so the
# suite can be pointed at a cluster that was set up by hand.
# ---------------------------------------------------------------------------------------------------------

DEFAULT_NAMESPACE = "ovpn-e2e"
DEFAULT_RELEASE = "ovpn"
DEFAULT_CLIENT_CN = "e2e-client"
DEFAULT_SERVER_CN = "openvpn-server"
DEFAULT_VPN_PORT = 1194
EXPORTER_PORT = 9234
# Secret keys. The server Secret is mounted as a directory, so each key becomes a file there.
SERVER_CONFIG_KEY = "server.conf"
CLIENT_CONFIG_KEY = "client.conf"
CLIENT_CONFIG_DIR = "/etc/openvpn/client"


@dataclass(frozen=True)
class Pki:
    ca: Credential
    server: Credential
    clients: dict[str, Credential] = field(default_factory=dict)
    tls_crypt_key: str = ""


def generate_pki(
    server_cn: str = DEFAULT_SERVER_CN,
    client_cns: Iterable[str] = (DEFAULT_CLIENT_CN,),
    *,
    days: int = 2,
    now: dt.datetime | None = None,
) -> Pki:
    """A CA, one server certificate (serverAuth) and client certificates (clientAuth), valid `days` days.

    The validity starts an hour in the past so clock skew between the laptop and the kind node is harmless.
    """
    authority = Authority("openvpn-exporter e2e CA", days=days, now=now)
    server = authority.issue(server_cn, server=True, dns_names=[server_cn])
    clients = {
        # A SAN on client certificates too: OpenVPN ignores it, RFC 5280 path validators want one.
        cn: authority.issue(cn, server=False, dns_names=[cn])
        for cn in client_cns
    }
    return Pki(
        ca=authority.credential,
        server=server,
        clients=clients,
        tls_crypt_key=tls_crypt_key(),
    )


# ---------------------------------------------------------------------------------------------------------
# OpenVPN configurations
# ---------------------------------------------------------------------------------------------------------


def _inline(tag: str, body: str) -> str:
    return f"<{tag}>\n{body.strip()}\n</{tag}>"


def server_config(pki: Pki) -> str:
    """The server configuration, certificates inline so one Secret key carries everything.

    No `port`, `proto` or `status` lines: the chart passes `--port`/`--proto` per protocol and
    `--status`/`--status-version` on OpenVPN's command line, so the files land where the sidecar reads them.
    """
    return "\n".join(
        [
            "dev tun",
            # The kind node's kernel may or may not carry ovpn-dco; the classic tun path works everywhere.
            "disable-dco",
            "topology subnet",
            "server 10.8.0.0 255.255.255.0",
            "dh none",
            "keepalive 2 10",
            "persist-key",
            "verb 3",
            _inline("ca", pki.ca.cert_pem),
            _inline("cert", pki.server.cert_pem),
            _inline("key", pki.server.key_pem),
            _inline("tls-crypt", pki.tls_crypt_key),
            "",
        ]
    )


def client_config(
    pki: Pki, client_cn: str, remote_host: str, *, port: int = DEFAULT_VPN_PORT, proto: str = "udp"
) -> str:
    """A client configuration that keeps retrying until the server Service answers.

    `ifconfig-noexec`/`route-noexec`: the tunnel is opened (the server must see a complete session) but the
    client pod's network is left alone.
    """
    cred = pki.clients[client_cn]
    return "\n".join(
        [
            "client",
            "dev tun",
            f"proto {proto}",
            f"remote {remote_host} {port}",
            "nobind",
            "disable-dco",
            "resolv-retry infinite",
            "connect-retry 1 5",
            "remote-cert-tls server",
            "ifconfig-noexec",
            "route-noexec",
            "verb 3",
            _inline("ca", pki.ca.cert_pem),
            _inline("cert", cred.cert_pem),
            _inline("key", cred.key_pem),
            _inline("tls-crypt", pki.tls_crypt_key),
            "",
        ]
    )


# ---------------------------------------------------------------------------------------------------------
# Kubernetes manifests
# ---------------------------------------------------------------------------------------------------------

E2E_LABELS: dict[str, str] = {"app.kubernetes.io/part-of": "openvpn-exporter-e2e"}


def secret_manifest(
    name: str, namespace: str, files: Mapping[str, str], labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An Opaque Secret whose data keys are `files`' names, values base64 of the text."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or E2E_LABELS)},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode("ascii") for k, v in sorted(files.items())},
    }


def server_secret(pki: Pki, name: str, namespace: str) -> dict[str, Any]:
    """The OpenVPN server Secret: the config with inline PKI, plus the PKI as separate files as well (for a
    chart or an operator who prefers `ca`/`cert`/`key` file references)."""
    return secret_manifest(
        name,
        namespace,
        {
            SERVER_CONFIG_KEY: server_config(pki),
            "ca.crt": pki.ca.cert_pem,
            "server.crt": pki.server.cert_pem,
            "server.key": pki.server.key_pem,
            "tls-crypt.key": pki.tls_crypt_key,
        },
    )


def client_secret(
    pki: Pki, client_cn: str, remote_host: str, name: str, namespace: str, *, port: int, proto: str
) -> dict[str, Any]:
    config = client_config(pki, client_cn, remote_host, port=port, proto=proto)
    return secret_manifest(name, namespace, {CLIENT_CONFIG_KEY: config})


def client_pod_manifest(
    name: str, namespace: str, image: str, secret_name: str, *, pull_policy: str = "Never"
) -> dict[str, Any]:
    """A Pod running the OpenVPN test image as a client.

    It needs a tun device: kind nodes are privileged containers that see the host's /dev/net/tun, and the
    runtime's default device rules allow it, so a hostPath of type CharDevice plus NET_ADMIN is enough
    (no privileged pod).
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**E2E_LABELS, "app.kubernetes.io/name": "openvpn-e2e-client"},
        },
        "spec": {
            "restartPolicy": "Always",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "openvpn-client",
                    "image": image,
                    "imagePullPolicy": pull_policy,
                    # The image's entrypoint execs openvpn with these arguments.
                    "args": ["--config", f"{CLIENT_CONFIG_DIR}/{CLIENT_CONFIG_KEY}"],
                    "securityContext": {
                        "capabilities": {"add": ["NET_ADMIN"]},
                        "allowPrivilegeEscalation": False,
                    },
                    "volumeMounts": [
                        {"name": "config", "mountPath": CLIENT_CONFIG_DIR, "readOnly": True},
                        {"name": "tun", "mountPath": "/dev/net/tun"},
                    ],
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"memory": "64Mi"},
                    },
                }
            ],
            "volumes": [
                {"name": "config", "secret": {"secretName": secret_name, "defaultMode": 0o400}},
                {"name": "tun", "hostPath": {"path": "/dev/net/tun", "type": "CharDevice"}},
            ],
        },
    }


# ---------------------------------------------------------------------------------------------------------
# Helm values
# ---------------------------------------------------------------------------------------------------------


def split_image(ref: str) -> tuple[str, str]:
    """`repo[:tag]` -> (repo, tag); a registry port (`host:5000/repo`) is not mistaken for a tag."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


# Path of exporter.yaml's `server_name` in chart/values.yaml, as a `--set` key; the upgrade test changes it.
SERVER_NAME_SET_KEY = "exporter.config.serverName"
# OpenVPN's status refresh interval in the test (seconds): short, so a client shows up quickly.
STATUS_INTERVAL = 2


def helm_values(
    *,
    exporter_image: str,
    openvpn_image: str,
    server_secret_name: str,
    server_name: str = DEFAULT_SERVER_CN,
    vpn_port: int = DEFAULT_VPN_PORT,
) -> dict[str, Any]:
    """Values for `helm install ./chart` (names as in chart/values.yaml): the test images, already loaded
    into kind and so never pulled, the generated server Secret, UDP only, the ServiceMonitor on."""
    exp_repo, exp_tag = split_image(exporter_image)
    ovpn_repo, ovpn_tag = split_image(openvpn_image)
    return {
        "openvpn": {
            "image": {"registry": "", "repository": ovpn_repo, "tag": ovpn_tag, "pullPolicy": "Never"},
            "config": {"existingSecret": server_secret_name, "file": SERVER_CONFIG_KEY},
            "statusInterval": STATUS_INTERVAL,
            "udp": {"enabled": True, "port": vpn_port},
            "tcp": {"enabled": False},
            "mountTunDevice": True,
        },
        "exporter": {
            "image": {"registry": "", "repository": exp_repo, "tag": exp_tag, "pullPolicy": "Never"},
            "config": {"serverName": server_name, "staleAfter": 60},
        },
        "service": {"type": "ClusterIP", "ports": {"udp": vpn_port}},
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "e2e"}},
        # With the CRDs installed the API server validates the rule against the PrometheusRule schema.
        "prometheusRule": {"enabled": True},
        "tests": {"enabled": True},
    }


# ---------------------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServicePort:
    service: str
    port: int
    protocol: str
    port_name: str


def _ports(service_list: Mapping[str, Any]) -> list[ServicePort]:
    out: list[ServicePort] = []
    for svc in service_list.get("items", []):
        name = svc["metadata"]["name"]
        for p in svc.get("spec", {}).get("ports", []) or []:
            protocol = str(p.get("protocol", "TCP"))
            out.append(ServicePort(name, int(p["port"]), protocol, str(p.get("name", ""))))
    return out


def pick_vpn_service(service_list: Mapping[str, Any], prefer: str = "udp") -> ServicePort:
    """The Service port a client connects to: not the exporter's port, UDP preferred (OpenVPN's default)."""
    candidates = [p for p in _ports(service_list) if p.port != EXPORTER_PORT and "metrics" not in p.port_name]
    if not candidates:
        raise LookupError("no OpenVPN Service port found")
    candidates.sort(key=lambda p: (p.protocol.lower() != prefer, p.port != DEFAULT_VPN_PORT, p.service))
    return candidates[0]


def pick_metrics_service(service_list: Mapping[str, Any]) -> ServicePort:
    """The Service port serving the exporter: named `metrics` (chart convention) or the exporter's port."""
    ports = [p for p in _ports(service_list) if p.protocol == "TCP"]
    found = [p for p in ports if p.port_name == "metrics"] or [p for p in ports if p.port == EXPORTER_PORT]
    if not found:
        raise LookupError("no metrics Service port found")
    return sorted(found, key=lambda p: p.service)[0]


def selector_matches(match_labels: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Kubernetes matchLabels selector: every pair present. An empty selector matches everything, which a
    ServiceMonitor must not rely on, so callers check that it is non-empty too."""
    return all(labels.get(k) == v for k, v in match_labels.items())


# ---------------------------------------------------------------------------------------------------------
# Prometheus text exposition format
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    raw_value: str


class ExpositionError(ValueError):
    pass


_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def _parse_labels(line: str, pos: int) -> tuple[dict[str, str], int]:
    """Parse `{a="x",b="y\\"z"}` starting at `line[pos] == "{"`; return the labels and the index after `}`."""
    labels: dict[str, str] = {}
    i = pos + 1
    n = len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == "}":
            return labels, i + 1
        start = i
        while i < n and (line[i].isalnum() or line[i] == "_"):
            i += 1
        key = line[start:i]
        if not key or i >= n or line[i] != "=":
            raise ExpositionError(f"bad label name at column {start}: {line!r}")
        i += 1
        if i >= n or line[i] != '"':
            raise ExpositionError(f"label value must be quoted at column {i}: {line!r}")
        i += 1
        chars: list[str] = []
        while True:
            if i >= n:
                raise ExpositionError(f"unterminated label value: {line!r}")
            c = line[i]
            if c == "\\":
                if i + 1 >= n or line[i + 1] not in _ESCAPES:
                    raise ExpositionError(f"bad escape at column {i}: {line!r}")
                chars.append(_ESCAPES[line[i + 1]])
                i += 2
                continue
            if c == '"':
                i += 1
                break
            chars.append(c)
            i += 1
        if key in labels:
            raise ExpositionError(f"duplicate label {key!r}: {line!r}")
        labels[key] = "".join(chars)
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == ",":
            i += 1
            continue
        if i < n and line[i] == "}":
            return labels, i + 1
        raise ExpositionError(f"expected ',' or '}}' at column {i}: {line!r}")


def parse_exposition(text: str) -> list[Sample]:
    """Parse Prometheus text format 0.0.4 into samples (comments and HELP/TYPE lines are skipped)."""
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        i = 0
        while i < len(line) and (line[i].isalnum() or line[i] in "_:"):
            i += 1
        name = line[:i]
        if not name or name[0].isdigit():
            raise ExpositionError(f"bad metric name: {raw!r}")
        labels: dict[str, str] = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i)
        rest = line[i:].split()
        if not rest or len(rest) > 2:
            raise ExpositionError(f"expected a value (and an optional timestamp): {raw!r}")
        try:
            value = float(rest[0])
        except ValueError as exc:
            raise ExpositionError(f"bad value {rest[0]!r}: {raw!r}") from exc
        samples.append(Sample(name, labels, value, rest[0]))
    return samples


def find_samples(samples: Iterable[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def client_label(common_name: str, protocol: str) -> str:
    """The exporter's `client` label: `<CN>_<tcp|udp>`."""
    return f"{common_name}_{protocol.lower()}"


# ---------------------------------------------------------------------------------------------------------
# Command line for kind/e2e.sh
# ---------------------------------------------------------------------------------------------------------


def _dump(path: Path, docs: Sequence[Mapping[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False))


def _cmd_prepare(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pki = generate_pki(args.server_cn, [args.client_cn])
    # Kept (0600) so the client step, run later by the same script, signs nothing new.
    pki_file = out / "pki.json"
    pki_file.write_text(
        json.dumps(
            {
                "ca": vars(pki.ca),
                "server": vars(pki.server),
                "clients": {k: vars(v) for k, v in pki.clients.items()},
                "tls_crypt_key": pki.tls_crypt_key,
            }
        )
    )
    pki_file.chmod(0o600)
    server_secret_name = f"{args.release}-e2e-openvpn"
    _dump(out / "server-secret.yaml", [server_secret(pki, server_secret_name, args.namespace)])
    values = helm_values(
        exporter_image=args.exporter_image,
        openvpn_image=args.openvpn_image,
        server_secret_name=server_secret_name,
        server_name=args.server_name,
    )
    (out / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return 0


def _load_pki(path: Path) -> Pki:
    d = json.loads(path.read_text())
    return Pki(
        ca=Credential(**d["ca"]),
        server=Credential(**d["server"]),
        clients={k: Credential(**v) for k, v in d["clients"].items()},
        tls_crypt_key=d["tls_crypt_key"],
    )


def _cmd_client(args: argparse.Namespace) -> int:
    out = Path(args.out)
    services = json.load(sys.stdin)
    vpn = pick_vpn_service(services)
    pki = _load_pki(out / "pki.json")
    host = f"{vpn.service}.{args.namespace}.svc.cluster.local"
    secret_name = f"{args.release}-e2e-client"
    docs = [
        client_secret(
            pki, args.client_cn, host, secret_name, args.namespace, port=vpn.port, proto=vpn.protocol.lower()
        ),
        client_pod_manifest(secret_name, args.namespace, args.openvpn_image, secret_name),
    ]
    _dump(out / "client.yaml", docs)
    print(f"{vpn.service} {vpn.port}/{vpn.protocol}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e_support", description="Files for the kind end-to-end suite.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, help="work directory for generated files")
        p.add_argument("--namespace", default=os.environ.get("E2E_NAMESPACE", DEFAULT_NAMESPACE))
        p.add_argument("--release", default=os.environ.get("E2E_RELEASE", DEFAULT_RELEASE))
        p.add_argument("--client-cn", default=os.environ.get("E2E_CLIENT_CN", DEFAULT_CLIENT_CN))
        p.add_argument("--openvpn-image", required=True)

    prep = sub.add_parser("prepare", help="PKI, server Secret and Helm values")
    common(prep)
    prep.add_argument("--exporter-image", required=True)
    prep.add_argument("--server-cn", default=DEFAULT_SERVER_CN)
    prep.add_argument("--server-name", default=DEFAULT_SERVER_CN, help="exporter.yaml server_name")
    prep.set_defaults(func=_cmd_prepare)

    cli = sub.add_parser("client", help="client Secret and Pod; reads `kubectl get svc -o json` on stdin")
    common(cli)
    cli.set_defaults(func=_cmd_client)

    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
