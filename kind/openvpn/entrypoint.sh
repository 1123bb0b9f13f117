#!/bin/sh
# Start OpenVPN in the foreground with the given arguments (default: the mounted openvpn.conf).
# Kubernetes does not hand a pod /dev/net/tun the way `docker run --device` does: create the node when
# it is missing. That needs CAP_MKNOD, which the runtime's default set has but the chart's least-privilege
# context (drop ALL, add NET_ADMIN) does not: the chart mounts the node's device instead
# (openvpn.mountTunDevice). Without either, go on and let OpenVPN report the missing device itself if it
# needs one (`--version`, `--genkey` do not).
set -eu
if [ ! -c /dev/net/tun ]; then
    if mkdir -p /dev/net 2>/dev/null && mknod /dev/net/tun c 10 200 2>/dev/null; then
        chmod 0666 /dev/net/tun
    else
        echo "openvpn-entrypoint: /dev/net/tun is missing and cannot be created (no CAP_MKNOD?)" >&2
    fi
fi
exec openvpn "$@"
