#!/usr/bin/env bash
# Install cosign (keyless signing of the release's images and OCI chart) on a Linux amd64 machine that reaches
# GitHub: the release binary, checked against a pinned sha256 (the one sigstore/cosign-installer pins for
# this version). Idempotent.
#
#   COSIGN_INSTALL_DIR  destination directory (default /usr/local/bin)
set -euo pipefail

COSIGN_VERSION=v3.0.6
COSIGN_SHA256=c956e5dfcac53d52bcf058360d579472f0c1d2d9b69f55209e256fe7783f4c74   # cosign-linux-amd64
install_dir=${COSIGN_INSTALL_DIR:-/usr/local/bin}

log() { printf 'install-cosign: %s\n' "$*" >&2; }

if [[ $(uname -s)/$(uname -m) != Linux/x86_64 ]]; then
    log "only linux-amd64 is pinned here; install cosign $COSIGN_VERSION another way"
    exit 1
fi
if [[ $(cosign version --json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p') == "$COSIGN_VERSION" ]]; then
    log "cosign $COSIGN_VERSION already installed"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL --retry 3 -o "$work/cosign" \
    "https://github.com/sigstore/cosign/releases/download/$COSIGN_VERSION/cosign-linux-amd64"
echo "$COSIGN_SHA256  $work/cosign" | sha256sum --check --quiet || {
    log "cosign $COSIGN_VERSION does not have the pinned sha256: refusing to install it"
    exit 1
}
if [[ -w $install_dir ]]; then
    install -m 0755 "$work/cosign" "$install_dir/cosign"
else
    sudo install -m 0755 "$work/cosign" "$install_dir/cosign"
fi
log "installed $("$install_dir/cosign" version 2>&1 | grep -m1 GitVersion | tr -s ' ')"
