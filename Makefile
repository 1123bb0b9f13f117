# Everyday commands. `make run` serves the bundled example on http://localhost:9234; `make test` runs
# every suite (lint, types, unit, integration, chart, image, rules, security, robustness, mgmt, workflows).
# Suites that need root, OpenVPN, Helm, a container engine or a browser skip without them locally and fail
# without them when CI is set; `.ci/run` installs all of it on a fresh Debian 12 machine, and
# `.ci/run SUITE` what one suite needs (each GitHub job runs one that way).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST := $(BIN)/pytest

.PHONY: run test check lint typecheck actionlint unit integration chart-test image-test rules-test security-test \
	robustness-test mgmt-test workflows-test e2e bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/openvpn-exporter --config.file examples/exporter.yaml

test: check
	$(PYTEST) tests

check: lint typecheck

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test
	$(BIN)/mypy --strict exporter

unit: $(VENV)/.test
	$(PYTEST) tests/unit

integration: $(VENV)/.test
	$(PYTEST) tests/integration

chart-test: $(VENV)/.test
	$(PYTEST) tests/chart

image-test: $(VENV)/.test
	$(PYTEST) tests/image

# One target per remaining suite, so `.ci/run SUITE` (and so each GitHub job) runs exactly one of them.
rules-test security-test robustness-test mgmt-test workflows-test: %-test: $(VENV)/.test
	$(PYTEST) tests/$*

# The workflows, with shellcheck on every `run:` step (.ci/install-actionlint.sh installs both).
actionlint: $(VENV)/.test
	$(BIN)/actionlint -color

e2e: $(VENV)/.test
	bash kind/e2e.sh

bench: $(VENV)/.runtime
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts .bench
