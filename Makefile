# Two commands matter: `make run` starts Corral, `make test` runs the tests (its quick tiers;
# `make test-all` adds the end-to-end tier, and is what CI runs).
# A Python that per-project workload users can run too (scripts/pick-python says why).
PYTHON ?= $(shell bash scripts/pick-python)
VENV ?= .venv
BIN := $(VENV)/bin
export CORRAL_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: run test test-e2e test-all install lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# Embedded mode: SQLite in ~/.local/share/corral, the built-in local cluster, 127.0.0.1:8000.
run: $(BIN)/.installed
	$(BIN)/corral serve

# Every database test runs on SQLite and PostgreSQL; a skipped test fails the run.
PYTEST := CORRAL_REQUIRE_POSTGRES=1 CORRAL_FAIL_ON_SKIP=1 $(BIN)/pytest

# The quick tiers, every test but the end-to-end ones (unit: pure logic; integration: the
# app over real databases, processes and Slurm daemons; conformance: every backend on its
# engine): well under 20 minutes.
test: $(BIN)/.installed
	bash scripts/ensure-postgres
	$(BIN)/lint-imports
	$(PYTEST) tests --ignore=tests/e2e

# The end-to-end tier: `corral serve` as a process running real workloads, the CLI, and
# the web UI in Chromium.
test-e2e: $(BIN)/.installed
	bash scripts/ensure-postgres
	$(PYTEST) tests/e2e

# Every tier, one after the other (not side by side, even under make -j): what CI runs.
test-all: $(BIN)/.installed
	$(MAKE) test
	$(MAKE) test-e2e

lint: $(BIN)/.installed
	$(BIN)/lint-imports

bench: $(BIN)/.installed
	bash bench/run_all.sh

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
