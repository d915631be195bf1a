# Ketenpoort — every target works on a fresh clone; `install` is idempotent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install serve serve-scaled test lint bench supergraph clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: install
	$(BIN)/ketenpoort serve

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

# The supergraph of the COA and IND subgraph mocks (mocks/supergraph.graphql), composed with
# Apollo's composition library (npm, installed into tests/node); `make test` checks it is current.
supergraph: install
	$(BIN)/python -m tests.federation

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
