# Stratoflow developer commands. Every target sets itself up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# test processes for `make test` (pytest-xdist); most tests wait on I/O, so more than the cores
TEST_WORKERS ?= 4

.PHONY: demo test lint typecheck unit functional integration compat bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,test]'
	touch $(STAMP)

## demo: install everything, then the ETL demo and a deployment run by a worker (embedded default, no AWS)
demo: $(STAMP)
	$(BIN)/python examples/etl_demo.py
	$(BIN)/python examples/deploy_demo.py

## test: install everything, then lint, type-check and run the whole suite
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

## lint: ruff, then the layering contracts of .importlinter (sdk -> runtime <- handlers)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP)
	$(BIN)/mypy runtime sdk handlers

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

functional: $(STAMP)
	$(BIN)/python -m pytest tests/functional

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

## compat: run every program of examples/prefect_docs/ (Prefect 3's docs, imports from sdk)
compat: $(STAMP)
	$(BIN)/python -m pytest -s tests/integration/test_prefect_docs_examples.py

## bench: engine overhead and cost figures (prints, asserts nothing)
bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/cost.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
