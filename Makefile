# Two commands matter: `make run` starts Corral, `make test` runs every test.
# A Python that per-project workload users can run too (scripts/pick-python says why).
PYTHON ?= $(shell bash scripts/pick-python)
VENV ?= .venv
BIN := $(VENV)/bin
export CORRAL_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: run test install lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# Embedded mode: SQLite in ~/.local/share/corral, the built-in local cluster, 127.0.0.1:8000.
run: $(BIN)/.installed
	$(BIN)/corral serve

# Every test, on SQLite and PostgreSQL; a skipped test fails the run.
test: $(BIN)/.installed
	bash scripts/ensure-postgres
	$(BIN)/lint-imports
	CORRAL_REQUIRE_POSTGRES=1 CORRAL_FAIL_ON_SKIP=1 $(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/lint-imports

bench: $(BIN)/.installed
	bash bench/run_all.sh

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
