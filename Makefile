# One entry point. `make test` works on a fresh clone with nothing but Python 3.11+:
# it creates .venv, installs the project and its dev tools, lints, type-checks and runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime
PYTEST_ARGS ?=

.PHONY: test test-long install lint typecheck pytest run bench-ledger bench-deps bench-http bench-reads bench-points clean system-deps

test: install system-deps lint typecheck pytest

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[postgres]" --group dev
	touch $(STAMP)

install: $(STAMP)

# What `make run` needs: the project and its runtime dependencies, without the dev tools.
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[postgres]"
	touch $(RUNTIME)

# Debian packages the suite uses (Go and golang.org/x/mod for the interop test, Chromium for the pages).
system-deps:
	@bash scripts/system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -n 2 -m "not slow" $(PYTEST_ARGS)

# The long reliability runs (tamper matrix on a 10,000-entry demo ledger, concurrent clients against several
# server processes, SIGKILL crash recovery, stateful API fuzzing); .ci/run runs them after `make test`.
test-long: install system-deps
	$(BIN)/pytest -n 2 -m slow $(PYTEST_ARGS)

# Creates a development registry in data/ on first run (plain key files: development only) and fills it
# with the demo (participants' keys in data/demo-keys/), then serves it (`cdcer serve` prints the registry's
# verifier key at each start). Runtime dependencies only: `make test` installs the dev tools.
run: $(RUNTIME)
	@bash scripts/system-deps.sh --runtime
	@[ -f data/registry-log.key ] || $(BIN)/cdcer init --plain-keys --founded-days-ago 30
	@[ -d data/demo-keys ] || $(BIN)/cdcer demo
	@echo "Where to look, once it serves:"
	@echo "  public pages      http://127.0.0.1:8000/  (a claim certificate: http://127.0.0.1:8000/claims/CN0001)"
	@echo "  API docs          http://127.0.0.1:8000/docs"
	@echo "  signed checkpoint http://127.0.0.1:8000/v1/log/checkpoint"
	@echo "  verifier key      http://127.0.0.1:8000/v1/log/vkey"
	@echo "  projects, claims  http://127.0.0.1:8000/v1/projects  http://127.0.0.1:8000/v1/claims"
	@echo "  data folder       data/ (registry.db, the log and authority keys; demo participants' keys in data/demo-keys/)"
	$(BIN)/cdcer serve

bench-ledger: install
	$(BIN)/python -m bench.ledger

# wrk (Debian's C load generator) drives the HTTP benchmark; without it bench.http falls back to asyncio
# clients, which saturate near 500 requests/s on these machines.
bench-deps:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| echo "bench-deps: install Debian's wrk for the HTTP benchmark" >&2; }

bench-http: install bench-deps
	$(BIN)/python -m bench.http --engine sqlite
	$(BIN)/python -m bench.http --engine postgres

bench-reads: install
	@[ -f bench-data/ledger.db ] || $(BIN)/python -m bench.ledger --entries 1000000 --db bench-data/ledger.db
	$(BIN)/python -m bench.reads --db bench-data/ledger.db

# Attestation throughput and the audit's rate over a points-heavy log, on both engines.
bench-points: install
	$(BIN)/python -m bench.points --db sqlite
	$(BIN)/python -m bench.points --db postgresql

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
