#!/usr/bin/env bash
# End-to-end suite on a throw-away kind cluster:
#   build both images -> create a cluster -> load the images (docker save + kind load image-archive)
#   -> prove an unprivileged pod with NET_ADMIN can create a tun device -> Prometheus Operator CRDs
#   -> PKI Secret -> helm install ./chart -> OpenVPN client pod -> pytest -m e2e tests/e2e --e2e
#   -> each chart/ci scenario that can run on kind: helm install, helm test, helm uninstall -> delete the cluster.
#
# Needs docker, kind v0.28+ (.ci/install-kind.sh pins it), helm, kubectl and a Python with pytest, kubernetes,
# cryptography and PyYAML (the project's .venv is used when present). Arguments are passed on to pytest.
#
# Environment:
#   E2E_RUN_ID          suffix of the cluster name and image tags (default: time and PID)
#   E2E_KEEP_CLUSTER=1  leave the cluster (and its kubeconfig) behind for debugging
#   E2E_ARTIFACTS       where logs, events and the JUnit report go (default: test-artifacts/e2e)
#   KIND_NODE_IMAGE     kindest/node image to run (default: kind v0.29.0's Kubernetes 1.33.1 image, by digest)
#   E2E_SCENARIOS=0     skip the chart/ci scenario installs
#   PROM_OPERATOR_VERSION  Prometheus Operator release the CRDs come from (default below)
#   PYTHON, DOCKER, KIND, HELM, KUBECTL  the tools to use
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RUN_ID=${E2E_RUN_ID:-$(date +%Y%m%d%H%M%S)-$$}
CLUSTER=${E2E_CLUSTER:-ovpn-e2e-$RUN_ID}
NAMESPACE=${E2E_NAMESPACE:-ovpn-e2e}
RELEASE=${E2E_RELEASE:-ovpn}
CLIENT_CN=${E2E_CLIENT_CN:-e2e-client}
SERVER_NAME=${E2E_SERVER_NAME:-openvpn-server}
EXPORTER_IMAGE=openvpn-exporter:e2e-$RUN_ID
OPENVPN_IMAGE=openvpn-exporter-openvpn:e2e-$RUN_ID
# Pinned: the ServiceMonitor/PrometheusRule schemas the chart is validated against (cloudcoil models 0.80).
PROM_OPERATOR_VERSION=${PROM_OPERATOR_VERSION:-v0.80.0}
CRD_BASE=https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/$PROM_OPERATOR_VERSION/example/prometheus-operator-crd
ARTIFACTS=${E2E_ARTIFACTS:-$ROOT/test-artifacts/e2e}
# The node image of kind v0.29.0 (its release notes), pinned by digest as kind asks: runc >= 1.2.4 inside.
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f}
KEEP_CLUSTER=${E2E_KEEP_CLUSTER:-0}

DOCKER=${DOCKER:-docker}
KIND=${KIND:-kind}
HELM=${HELM:-helm}
KUBECTL=${KUBECTL:-kubectl}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
# The e2e helpers import the shared test support package (tests.support), so they run as a module from the
# repository root rather than as a file.
support() { PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m tests.e2e.e2e_support "$@"; }
preflight() { PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m tests.e2e.e2e_preflight "$@"; }

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

for tool in "$DOCKER" "$KIND" "$HELM" "$KUBECTL" "$PYTHON"; do
    command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
"$PYTHON" -c 'import pytest, kubernetes, cryptography, yaml' 2>/dev/null \
    || die "$PYTHON lacks pytest/kubernetes/cryptography/PyYAML: pip install -e '.[test]'"
[[ $RUN_ID =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]] || die "E2E_RUN_ID must be lowercase letters, digits and '-'"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ovpn-e2e.XXXXXX")
# A kubeconfig of its own: the developer's ~/.kube/config and current context are left alone.
export KUBECONFIG=$WORK/kubeconfig
CONTEXT=kind-$CLUSTER
kc() { "$KUBECTL" --context "$CONTEXT" "$@"; }
cluster_created=0

dump_diagnostics() {
    mkdir -p "$ARTIFACTS"
    log "collecting diagnostics into $ARTIFACTS"
    kc get all,configmaps,secrets,servicemonitors,prometheusrules -n "$NAMESPACE" -o wide \
        >"$ARTIFACTS/resources.txt" 2>&1 || true
    kc describe pods -n "$NAMESPACE" >"$ARTIFACTS/pods-describe.txt" 2>&1 || true
    kc get events -n "$NAMESPACE" --sort-by=.lastTimestamp >"$ARTIFACTS/events.txt" 2>&1 || true
    kc get events -A --field-selector type=Warning >"$ARTIFACTS/events-warnings-all.txt" 2>&1 || true
    local pod container
    for pod in $(kc get pods -n "$NAMESPACE" -o name 2>/dev/null); do
        for container in $(kc get -n "$NAMESPACE" "$pod" \
            -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}' 2>/dev/null); do
            kc logs -n "$NAMESPACE" "$pod" -c "$container" \
                >"$ARTIFACTS/${pod#pod/}.$container.log" 2>&1 || true
            kc logs -n "$NAMESPACE" "$pod" -c "$container" --previous \
                >"$ARTIFACTS/${pod#pod/}.$container.previous.log" 2>/dev/null || true
        done
    done
    "$HELM" --kube-context "$CONTEXT" status "$RELEASE" -n "$NAMESPACE" >"$ARTIFACTS/helm-status.txt" 2>&1 || true
    # Print the essentials too: in CI the log is what people read first.
    sed -n '1,200p' "$ARTIFACTS/resources.txt" >&2 || true
    tail -n 60 "$ARTIFACTS/events.txt" >&2 || true
    local f
    for f in "$ARTIFACTS"/*.log; do
        [[ -s $f ]] || continue
        printf '\n--- %s (last 40 lines)\n' "${f##*/}" >&2
        tail -n 40 "$f" >&2
    done
}

cleanup() {
    local rc=$?
    set +e
    if [[ $rc -ne 0 && $cluster_created -eq 1 ]]; then
        dump_diagnostics
    fi
    if [[ $cluster_created -eq 1 ]]; then
        if [[ $KEEP_CLUSTER == 1 ]]; then
            mkdir -p "$ARTIFACTS"
            cp "$KUBECONFIG" "$ARTIFACTS.kubeconfig"
            log "cluster $CLUSTER kept: export KUBECONFIG=$ARTIFACTS.kubeconfig; delete with: $KIND delete cluster --name $CLUSTER"
        else
            log "deleting cluster $CLUSTER"
            "$KIND" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >&2
        fi
    fi
    if [[ ${E2E_KEEP_IMAGES:-0} != 1 ]]; then
        "$DOCKER" image rm "$EXPORTER_IMAGE" "$OPENVPN_IMAGE" >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building $EXPORTER_IMAGE and $OPENVPN_IMAGE"
DOCKER_BUILDKIT=1 "$DOCKER" build -t "$EXPORTER_IMAGE" .
DOCKER_BUILDKIT=1 "$DOCKER" build -t "$OPENVPN_IMAGE" kind/openvpn

log "creating kind cluster $CLUSTER"
cluster_created=1
"$KIND" create cluster --name "$CLUSTER" --config kind/cluster.yaml --kubeconfig "$KUBECONFIG" --wait 180s \
    --image "$KIND_NODE_IMAGE"

log "loading images into the cluster"
# An archive rather than `kind load docker-image`, which fails on Docker's containerd image store
# ("content digest ... not found", kind issue #3795).
"$DOCKER" save -o "$WORK/images.tar" "$EXPORTER_IMAGE" "$OPENVPN_IMAGE"
"$KIND" load image-archive --name "$CLUSTER" "$WORK/images.tar"
rm -f "$WORK/images.tar"

log "checking that an unprivileged pod with NET_ADMIN can create a tun device"
kc create namespace "$NAMESPACE"
preflight tun-pod --namespace "$NAMESPACE" --openvpn-image "$OPENVPN_IMAGE" | kc apply -f -
phase=
for _ in $(seq 1 120); do
    phase=$(kc get -n "$NAMESPACE" pod/tun-check -o jsonpath='{.status.phase}' 2>/dev/null || true)
    [[ $phase == Succeeded || $phase == Failed ]] && break
    sleep 1
done
if [[ $phase != Succeeded ]]; then
    printf 'tun check pod: phase %s; its output:\n' "${phase:-unknown}" >&2
    kc logs -n "$NAMESPACE" pod/tun-check >&2 || true
    die "$(preflight tun-cause)"
fi
kc delete -n "$NAMESPACE" pod/tun-check --wait=false

log "installing Prometheus Operator CRDs $PROM_OPERATOR_VERSION (ServiceMonitor, PrometheusRule)"
# Server-side apply: these CRDs are too large for the last-applied annotation of a client-side apply.
kc apply --server-side \
    -f "$CRD_BASE/monitoring.coreos.com_servicemonitors.yaml" \
    -f "$CRD_BASE/monitoring.coreos.com_prometheusrules.yaml"
kc wait --for condition=Established --timeout 60s \
    crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com

log "generating the PKI and the release's values"
support prepare --out "$WORK/gen" --namespace "$NAMESPACE" --release "$RELEASE" \
    --client-cn "$CLIENT_CN" --server-name "$SERVER_NAME" \
    --exporter-image "$EXPORTER_IMAGE" --openvpn-image "$OPENVPN_IMAGE"
kc apply -f "$WORK/gen/server-secret.yaml"

log "helm install $RELEASE ./chart"
"$HELM" install "$RELEASE" ./chart --kube-context "$CONTEXT" --namespace "$NAMESPACE" \
    -f "$WORK/gen/values.yaml" --wait --timeout 5m

log "starting the OpenVPN client"
vpn=$(kc get services -n "$NAMESPACE" -l "app.kubernetes.io/instance=$RELEASE" -o json \
    | support client --out "$WORK/gen" --namespace "$NAMESPACE" --release "$RELEASE" \
        --client-cn "$CLIENT_CN" --openvpn-image "$OPENVPN_IMAGE")
log "client connects to $vpn"
kc apply -f "$WORK/gen/client.yaml"

log "running the end-to-end tests"
mkdir -p "$ARTIFACTS"
E2E=1 E2E_NAMESPACE=$NAMESPACE E2E_RELEASE=$RELEASE E2E_CLIENT_CN=$CLIENT_CN E2E_SERVER_NAME=$SERVER_NAME \
    E2E_KUBE_CONTEXT=$CONTEXT E2E_CHART=$ROOT/chart HELM=$HELM \
    "$PYTHON" -m pytest -m e2e tests/e2e --e2e -v -p no:cacheprovider \
    --junitxml "$ARTIFACTS/junit.xml" "$@"
log "end-to-end suite passed"

if [[ ${E2E_SCENARIOS:-1} != 0 ]]; then
    # chart-testing's `ct install` loop over chart/ci: install each scenario next to the release above (same
    # namespace and server Secret, its own release name), run its `helm test`, uninstall it.
    preflight scenarios --out "$WORK/gen" --chart chart --exporter-image "$EXPORTER_IMAGE" \
        --openvpn-image "$OPENVPN_IMAGE" --server-secret "$RELEASE-e2e-openvpn" >"$WORK/scenarios.txt"
    mapfile -t scenarios <"$WORK/scenarios.txt"
    for line in "${scenarios[@]}"; do
        read -r action file rest <<<"$line"
        if [[ $action == skip ]]; then
            log "chart/ci/$file: not installed on kind ($rest)"
            continue
        fi
        log "chart/ci/$file: helm install $rest, helm test"
        "$HELM" install "$rest" ./chart --kube-context "$CONTEXT" --namespace "$NAMESPACE" \
            -f "chart/ci/$file" -f "$WORK/gen/scenario-values.yaml" --wait --timeout 5m
        "$HELM" test "$rest" --kube-context "$CONTEXT" --namespace "$NAMESPACE" --logs --timeout 5m
        "$HELM" uninstall "$rest" --kube-context "$CONTEXT" --namespace "$NAMESPACE" --wait --timeout 2m
    done
    log "chart/ci scenarios passed"
fi
