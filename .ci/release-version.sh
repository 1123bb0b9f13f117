#!/usr/bin/env bash
# The release's one version: prints it when the git tag (vX.Y.Z), chart/Chart.yaml's `version` and its
# `appVersion` agree, and fails naming the one that differs otherwise. The release workflow runs it first.
#
# Usage: .ci/release-version.sh TAG [CHART_YAML]
set -euo pipefail

tag=${1:?usage: .ci/release-version.sh TAG [CHART_YAML]}
chart_yaml=${2:-$(dirname "${BASH_SOURCE[0]}")/../chart/Chart.yaml}

fail() { printf 'release-version: %s\n' "$*" >&2; exit 1; }

[[ $tag =~ ^v([0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?)$ ]] \
    || fail "tag '$tag' is not vMAJOR.MINOR.PATCH: tag releases as v1.2.3"
want=${BASH_REMATCH[1]}
[[ -r $chart_yaml ]] || fail "cannot read $chart_yaml"

# Top-level keys only (no indentation), quotes stripped: the two lines Helm reads.
field() { sed -n "s/^$1:[[:space:]]*[\"']\{0,1\}\([^\"'[:space:]]*\)[\"']\{0,1\}[[:space:]]*\$/\1/p" "$chart_yaml" | head -n 1; }
version=$(field version)
app_version=$(field appVersion)

[[ $version == "$want" ]] \
    || fail "$chart_yaml version is '$version' but the tag is $tag: set version: $want before tagging"
[[ $app_version == "$want" ]] \
    || fail "$chart_yaml appVersion is '$app_version' but the tag is $tag: set appVersion: \"$want\" before tagging"
printf '%s\n' "$want"
