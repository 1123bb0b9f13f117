#!/usr/bin/env bash
# Install what the integration suite (tests/integration) runs against: a real OpenVPN, a real browser, a real
# Prometheus and iproute2 for the network namespaces. Debian 12, run as root; idempotent (does nothing when
# everything is there already).
#
# The prometheus package would start its daemon from its post-install script (listening on :9090); a
# temporary policy-rc.d forbids starting services during the install. --no-install-recommends keeps
# prometheus-node-exporter (another daemon) out.
set -euo pipefail

# libatomic1: the node binary inside the playwright wheel links it (absent from a bare debian:bookworm).
packages=(openvpn chromium prometheus iproute2 fonts-liberation libatomic1)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-integration: already installed: ${packages[*]}"
else
    if [[ "$(id -u)" != "0" ]]; then
        echo "install-integration: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created_policy=1
    fi
    cleanup() {
        if ((created_policy)); then rm -f "$policy"; fi
    }
    trap cleanup EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The suite drives Debian's Chromium through the playwright package; it never downloads a browser.
for tool in openvpn chromium prometheus promtool ip; do
    if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$tool" ]]; then
        echo "install-integration: $tool is still missing after the install" >&2
        exit 1
    fi
done
echo "install-integration: $(/usr/sbin/openvpn --version | head -n1 | cut -d' ' -f1-2), $(chromium --version 2>/dev/null), $(prometheus --version 2>&1 | head -n1)"
