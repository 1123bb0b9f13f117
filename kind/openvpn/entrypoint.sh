#!/bin/sh
# Start OpenVPN in the foreground with the given arguments (default: the mounted openvpn.conf).
# Kubernetes does not hand a pod /dev/net/tun the way `docker run --device` does: create the node when
# it is missing. That needs CAP_MKNOD (granted by default); without it, go on and let OpenVPN report
# the missing device itself if it needs one (`--version`, `--genkey` do not).
set -eu
if [ ! -c /dev/net/tun ]; then
    if mkdir -p /dev/net 2>/dev/null && mknod /dev/net/tun c 10 200 2>/dev/null; then
        chmod 0666 /dev/net/tun
    else
        echo "openvpn-entrypoint: /dev/net/tun is missing and cannot be created (no CAP_MKNOD?)" >&2
    fi
fi
exec openvpn "$@"
