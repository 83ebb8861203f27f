# One entry point for set-up, checks and the demo. CI runs `make test` (see .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: test demo lint typecheck pytest bench install-dev clean

# The venv is (re)built when pyproject.toml changes; the stamp records what was installed.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev,bench]'
	touch $@

install-dev: $(VENV)/.dev-installed

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install-dev
	$(BIN)/mypy

pytest: install-dev
	$(BIN)/pytest

# Lint, strict type check, the whole test suite.
test: lint typecheck pytest

# The embedded default. Until the local-model issue lands this runs against the simulated server.
demo: install-dev
	$(BIN)/toa demo

bench: install-dev
	$(BIN)/python benchmarks/client_throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist
