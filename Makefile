# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# The test suite runs storage and ingest tests on PostgreSQL too. When this
# server cannot be reached (a fresh machine), the run starts a throwaway
# cluster of its own (tests/conftest.py); scripts/install-system-deps.sh
# installs PostgreSQL if missing. Set to "off" to skip those cases.
BONDLINE_TEST_POSTGRES ?= postgresql://postgres@127.0.0.1:5432/test
export BONDLINE_TEST_POSTGRES

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || (bash scripts/install-system-deps.sh && $(PYTHON) -m venv $(VENV))
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	touch $@

run: $(VENV)/.installed
	$(BIN)/bondline serve --demo --host $(HOST) --port $(PORT)

test: $(VENV)/.installed
	bash scripts/install-system-deps.sh
	$(BIN)/ruff check plugin media server tests bench
	$(BIN)/mypy plugin media server
	$(BIN)/lint-imports
	$(BIN)/pytest -q

bench: $(VENV)/.installed
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
