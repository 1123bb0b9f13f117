#!/usr/bin/env bash
# Install and start a real container engine for the pod simulation (tests/image), offline-friendly:
#   - Debian's docker.io and debootstrap, without letting the package start its own daemon
#     (that one would create the docker0 bridge and iptables rules);
#   - dockerd started by hand with no bridge, no iptables and no IP forwarding;
#   - a local stand-in for debian:bookworm-slim built with debootstrap, since no registry is reachable;
#   - debian:bookworm, the image of the CI workflow's job containers (tests/workflows runs them with act):
#     the slim stand-in plus this machine's CA bundle as a local certificate, so that pip inside a job
#     container trusts what pip on this machine trusts (a TLS-intercepting proxy, if any).
# Idempotent: every step checks whether it is already done.
#
# Usage: .ci/install-docker.sh          install, start the daemon, build the base image
#        .ci/install-docker.sh stop     stop the daemon started here and clean up its leftovers
set -euo pipefail

DOCKER=/usr/bin/docker          # Debian's client: a newer client elsewhere on PATH refuses BuildKit
BASE_IMAGE=debian:bookworm-slim
JOB_IMAGE=debian:bookworm
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/openvpn-exporter-dockerd.log}
DOCKERD_PIDFILE=/var/run/docker.pid
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'install-docker: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root"
    exit 1
fi

daemon_up() { "$DOCKER" info >/dev/null 2>&1; }

stop_daemon() {
    if [[ -s $DOCKERD_PIDFILE ]]; then
        local pid
        pid=$(cat "$DOCKERD_PIDFILE")
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping dockerd (pid $pid)"
            kill -TERM "$pid"
            for _ in $(seq 1 150); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        fi
    fi
    # dockerd leaves its default network namespace mounted when it exits.
    if mountpoint -q /run/docker/netns/default 2>/dev/null; then
        umount /run/docker/netns/default || umount -l /run/docker/netns/default || true
    fi
}

if [[ ${1:-} == stop ]]; then
    stop_daemon
    exit 0
fi

# --- packages ----------------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null || [[ ! -x $DOCKER ]] || ! command -v debootstrap >/dev/null \
    || ! command -v nsenter >/dev/null; then
    log "installing docker.io and debootstrap"
    created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # exit 101 = "action forbidden": keeps the package's post-install from starting dockerd.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io debootstrap util-linux ca-certificates >/dev/null
    if [[ $created_policy -eq 1 ]]; then
        rm -f /usr/sbin/policy-rc.d
    fi
fi

# --- daemon ------------------------------------------------------------------------------------------
if ! daemon_up; then
    if [[ -s $DOCKERD_PIDFILE ]] && ! kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null; then
        rm -f "$DOCKERD_PIDFILE"   # stale, from a daemon that did not exit cleanly
    fi
    if mountpoint -q /run/docker/netns/default 2>/dev/null; then
        umount /run/docker/netns/default || true
    fi
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: the daemon must not die with the shell or the job that started it.
    setsid dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --pidfile="$DOCKERD_PIDFILE" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq 1 600); do
        daemon_up && break
        sleep 0.1
    done
    if ! daemon_up; then
        log "dockerd did not come up within 60 s; last lines of its log:"
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
fi
log "dockerd is up: $("$DOCKER" version --format '{{.Server.Version}}')"

# --- base image --------------------------------------------------------------------------------------
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "building $BASE_IMAGE with debootstrap"
    work=$(mktemp -d /var/tmp/bookworm-slim.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    rootfs=$work/rootfs
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        exit 1
    }

    # Slim the tree the way the official -slim images are (debuerreotype's slimify).
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# Drop files that are never needed in a container image (as the official -slim images do).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{info,linda,man,groff,locale}/*
    rm -rf "$rootfs"/usr/share/lintian/overrides/*
    echo 'force-unsafe-io' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
    echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/cache/apt/archives/partial/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
        "$rootfs"/tmp/* "$rootfs"/var/tmp/*
    : >"$rootfs/etc/resolv.conf"
    : >"$rootfs/etc/machine-id"
    echo localhost >"$rootfs/etc/hostname"

    tar -C "$rootfs" --numeric-owner -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$work"
    trap - EXIT
fi
log "$BASE_IMAGE: $("$DOCKER" image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes"

if ! "$DOCKER" image inspect "$JOB_IMAGE" >/dev/null 2>&1; then
    log "building $JOB_IMAGE from $BASE_IMAGE and this machine's CA bundle"
    work=$(mktemp -d /var/tmp/bookworm.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    if [[ -s $HOST_CA_BUNDLE ]]; then
        cp "$HOST_CA_BUNDLE" "$work/build-host.crt"
    else
        : >"$work/build-host.crt"
    fi
    # update-ca-certificates (run when a job installs ca-certificates) adds local certificates to the bundle.
    printf 'FROM %s\nCOPY build-host.crt /usr/local/share/ca-certificates/build-host.crt\n' "$BASE_IMAGE" \
        >"$work/Dockerfile"
    "$DOCKER" build --quiet -t "$JOB_IMAGE" "$work" >/dev/null
    rm -rf "$work"
    trap - EXIT
fi
log "$JOB_IMAGE: $("$DOCKER" image inspect --format '{{.Size}}' "$JOB_IMAGE") bytes"
