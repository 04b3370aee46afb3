# TossIt: `make up` runs a local cluster, `make test` runs the whole suite.
# Everything is installed into .venv by these targets (Python 3.11+ required).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: up test test-docker lint bench clean help

help:
	@echo "make up     - install (first time) and run brain + 3 nodes on http://localhost:8000"
	@echo "make test   - install test tools (first time) and run the whole test suite"
	@echo "make test-docker - build the Docker image and test docker/docker-compose.yml"
	@echo "               (needs a Docker engine; skipped with the reason if none can start)"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - throughput/latency benchmark (bench/README.md)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "TossIt needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
	  { echo "could not create a virtual environment; on Debian/Ubuntu: sudo apt install python3-venv"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml scripts/install-test-deps.sh | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	bash scripts/install-test-deps.sh $(BIN)/python
	@touch $@ $(VENV)/.installed-run

up: $(VENV)/.installed-run
	$(BIN)/tossit up

# Tests run in one worker per core (at most 4; TEST_WORKERS=0: in this process):
# most of an integration test's time is its servers waiting on each other, so on
# 2 cores the suite takes about 14 minutes instead of 20.
TEST_WORKERS ?= auto
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS)

# The image and the compose cluster, end to end (scripts/docker-test.sh): needs no
# venv, since everything runs in containers.
test-docker:
	bash scripts/docker-test.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python bench/bench_cluster.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
