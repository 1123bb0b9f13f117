"""Before and after the kind end-to-end suite: the tun device check and the chart's ci/ scenarios.

- `tun-pod`: a Pod that is what the chart's OpenVPN container is (not privileged, NET_ADMIN added, the host's
  /dev/net/tun mounted) and creates a tun interface. kind/e2e.sh runs it before `helm install`: when the node's
  runc refuses /dev/net/tun to unprivileged containers (runc 1.2.0 to 1.2.3, kind v0.27's node image), the run
  stops there with that cause named, instead of a `helm install --wait` timeout.
- `scenarios`: for each chart/ci/*-values.yaml file, whether it can install on a bare kind cluster, and the
  values that point it at the locally loaded images and the generated server Secret (chart-testing's
  `ct install` loop: install, `helm test`, uninstall).

Run from the repository root: `python -m tests.e2e.e2e_preflight --help`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.e2e_support import E2E_LABELS, SERVER_CONFIG_KEY, split_image

TUN_POD = "tun-check"
TUN_IFACE = "tuncheck0"
TUN_OK = "tun device usable"
# What the failure of the check means, printed by kind/e2e.sh.
TUN_CAUSE = (
    "an unprivileged pod with NET_ADMIN cannot open /dev/net/tun on this cluster's nodes (its output is above). "
    "The known cause: runc 1.2.0 to 1.2.3 (kind v0.27's node image) dropped it from the default device rules "
    "(fixed in runc 1.2.4). Use kind v0.28+ and its node image (.ci/install-kind.sh, KIND_NODE_IMAGE in kind/e2e.sh)"
)

# chart/ci files that cannot install on a bare kind cluster, and why. Any other file is installed and tested.
NOT_ON_KIND: dict[str, str] = {
    "anchors-values.yaml": "pulls its images through global.imageRegistry (mirror.example.org) and a busybox "
    "init container, which a cluster without registry access cannot pull",
    "hardened-custom-values.yaml": "pulls registry.example.org images by digest and runs as ServiceAccount "
    "'vpn', which a cluster admin creates",
    "per-protocol-nodeport-values.yaml": "reads its server config from a ConfigMap an admin provides",
    "tls-basic-auth-values.yaml": "needs cert-manager's TLS Secret and the scrape credentials Secret",
    "udp-tcp-loadbalancer-values.yaml": "a LoadBalancer Service never gets an address on kind",
    "web-config-secret-values.yaml": "reads its web config from a Secret an admin provides",
}


def tun_pod_manifest(namespace: str, image: str, *, pull_policy: str = "Never") -> dict[str, Any]:
    """A Pod that creates and deletes a tun interface, with the chart's OpenVPN security settings."""
    script = f"ip tuntap add dev {TUN_IFACE} mode tun && ip link del {TUN_IFACE} && echo '{TUN_OK}'"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": TUN_POD,
            "namespace": namespace,
            "labels": {**E2E_LABELS, "app.kubernetes.io/name": TUN_POD},
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": TUN_POD,
                    "image": image,
                    "imagePullPolicy": pull_policy,
                    "command": ["sh", "-c", script],
                    "securityContext": {
                        "privileged": False,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"add": ["NET_ADMIN"]},
                    },
                    "volumeMounts": [{"name": "tun", "mountPath": "/dev/net/tun"}],
                }
            ],
            "volumes": [{"name": "tun", "hostPath": {"path": "/dev/net/tun", "type": "CharDevice"}}],
        },
    }


def scenario_values(*, exporter_image: str, openvpn_image: str, server_secret_name: str) -> dict[str, Any]:
    """Laid over a ci/ file: the locally loaded images (never pulled) and the generated server config."""
    exp_repo, exp_tag = split_image(exporter_image)
    ovpn_repo, ovpn_tag = split_image(openvpn_image)
    return {
        "openvpn": {
            "image": {"registry": "", "repository": ovpn_repo, "tag": ovpn_tag, "digest": "", "pullPolicy": "Never"},
            "config": {"existingSecret": server_secret_name, "file": SERVER_CONFIG_KEY},
        },
        "exporter": {
            "image": {"registry": "", "repository": exp_repo, "tag": exp_tag, "digest": "", "pullPolicy": "Never"}
        },
        "tests": {"enabled": True},
    }


def scenarios(chart: Path) -> list[tuple[str, str | None]]:
    """(file name, reason it is not installed or None) for every chart/ci values file, sorted."""
    return [(path.name, NOT_ON_KIND.get(path.name)) for path in sorted((chart / "ci").glob("*-values.yaml"))]


def release_name(values_file: str) -> str:
    """A short release name per scenario: `ci-` and the file name without `-values.yaml`, at most 30 chars."""
    stem = values_file.removesuffix(".yaml").removesuffix("-values")
    return f"ci-{stem}"[:30].rstrip("-")


def _cmd_tun_pod(args: argparse.Namespace) -> int:
    sys.stdout.write(yaml.safe_dump(tun_pod_manifest(args.namespace, args.openvpn_image), sort_keys=False))
    return 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    """Writes the overlay values file; prints `install <file> <release>` or `skip <file> <reason>` lines."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overlay = scenario_values(
        exporter_image=args.exporter_image,
        openvpn_image=args.openvpn_image,
        server_secret_name=args.server_secret,
    )
    (out / "scenario-values.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    for name, reason in scenarios(Path(args.chart)):
        print(f"skip {name} {reason}" if reason else f"install {name} {release_name(name)}")
    return 0


def _cmd_tun_cause(args: argparse.Namespace) -> int:
    print(TUN_CAUSE)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e_preflight", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tun-cause", help="what a failed tun check means, one line").set_defaults(func=_cmd_tun_cause)
    tun = sub.add_parser("tun-pod", help="the tun check Pod, as YAML on stdout")
    tun.add_argument("--namespace", required=True)
    tun.add_argument("--openvpn-image", required=True)
    tun.set_defaults(func=_cmd_tun_pod)
    scen = sub.add_parser("scenarios", help="the ci/ scenarios to install, and the values laid over them")
    scen.add_argument("--out", required=True, help="where scenario-values.yaml goes")
    scen.add_argument("--chart", default="chart")
    scen.add_argument("--exporter-image", required=True)
    scen.add_argument("--openvpn-image", required=True)
    scen.add_argument("--server-secret", required=True)
    scen.set_defaults(func=_cmd_scenarios)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
