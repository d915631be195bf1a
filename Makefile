# Ketenpoort — every target works on a fresh clone; `install` is idempotent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install serve console serve-scaled test lint bench bench-console screenshots supergraph soak chaos clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: install
	$(BIN)/ketenpoort serve

# The accountability console on http://127.0.0.1:8100 over the same trail as `make serve`.
console: install
	$(BIN)/ketenpoort console

# Screenshots of the console's main pages (from its browser tests) into docs/console/.
screenshots: install
	KETENPOORT_SCREENSHOTS=docs/console $(BIN)/python -m pytest tests/test_console_browser.py -q

# Two gateway processes (127.0.0.1:8001, :8002) sharing the local Redis and PostgreSQL.
serve-scaled: install
	$(BIN)/python scripts/serve_scaled.py

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check gateway resolvers mocks tests bench examples
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench.console_search

# The console's searches over a generated 1,000,000-entry PostgreSQL trail (part of `bench`).
bench-console: install
	$(BIN)/python -m bench.console_search

# The supergraph of the COA and IND subgraph mocks (mocks/supergraph.graphql), composed with
# Apollo's composition library (npm, installed into tests/node); `make test` checks it is current.
supergraph: install
	$(BIN)/python -m tests.federation

# 10 minutes of mixed traffic per scenario (SQLite; two processes on PostgreSQL + Redis):
# bench/results/soak.{json,md,png}. Short variant: python -m bench.soak --short.
soak: install
	$(BIN)/python -m bench.soak

# Faults under traffic (registries, SQLite lock and full disk, PostgreSQL, Redis, SIGTERM,
# SIGKILL): bench/results/chaos.{json,md}. Short variant: python -m bench.chaos --short.
chaos: install
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
