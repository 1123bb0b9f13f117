#!/usr/bin/env bash
# Install kind and a matching kubectl for the end-to-end suite (kind/e2e.sh), on a Linux amd64 machine that
# reaches GitHub and dl.k8s.io (GitHub's runners; the CI machine here cannot, see the README). Idempotent.
#
# kind v0.29.0: its node images carry containerd 2.1 and a runc newer than 1.2.4. runc 1.2.0-1.2.3 (kind v0.27's
# node image) refuse /dev/net/tun to unprivileged containers, which the chart's OpenVPN and the test client
# need. kind/e2e.sh pins the node image of this release by digest (KIND_NODE_IMAGE there).
#
#   KIND_INSTALL_DIR  destination directory (default /usr/local/bin)
set -euo pipefail

KIND_VERSION=v0.29.0
KIND_SHA256=c72eda46430f065fb45c5f70e7c957cc9209402ef309294821978677c8fb3284   # kind-linux-amd64
KUBECTL_VERSION=v1.33.1   # the Kubernetes version of kind/e2e.sh's node image
install_dir=${KIND_INSTALL_DIR:-/usr/local/bin}

log() { printf 'install-kind: %s\n' "$*" >&2; }

if [[ $(uname -s)/$(uname -m) != Linux/x86_64 ]]; then
    log "only linux-amd64 is pinned here; install kind $KIND_VERSION and kubectl $KUBECTL_VERSION another way"
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sudo_install() {
    if [[ -w $install_dir ]]; then install -m 0755 "$1" "$install_dir/$2"; else sudo install -m 0755 "$1" "$install_dir/$2"; fi
}

if [[ $(kind version 2>/dev/null | cut -d' ' -f2) != "$KIND_VERSION" ]]; then
    curl -fsSL --retry 3 -o "$work/kind" "https://github.com/kubernetes-sigs/kind/releases/download/$KIND_VERSION/kind-linux-amd64"
    echo "$KIND_SHA256  $work/kind" | sha256sum --check --quiet || {
        log "kind $KIND_VERSION does not have the pinned sha256: refusing to install it"
        exit 1
    }
    sudo_install "$work/kind" kind
fi

if ! kubectl version --client 2>/dev/null | grep -qx "Client Version: $KUBECTL_VERSION"; then
    base="https://dl.k8s.io/release/$KUBECTL_VERSION/bin/linux/amd64"
    curl -fsSL --retry 3 -o "$work/kubectl" "$base/kubectl"
    # dl.k8s.io publishes the digest next to the binary.
    echo "$(curl -fsSL --retry 3 "$base/kubectl.sha256")  $work/kubectl" | sha256sum --check --quiet || {
        log "kubectl $KUBECTL_VERSION does not match its published sha256"
        exit 1
    }
    sudo_install "$work/kubectl" kubectl
fi
log "$(kind version), kubectl $(kubectl version --client | head -n 1)"
