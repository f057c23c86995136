# The two commands of the README: `make dev` (set up and start everything) and `make test` (set up and test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup dev dev-direct worker test lint bench bench-api bench-pipeline clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

dev: setup          ## Temporal dev server + worker + API on 127.0.0.1:8000
	$(BIN)/album-enhance dev

dev-direct: setup   ## API only, batches run in-process (no Temporal)
	$(BIN)/album-enhance dev --direct

worker: setup       ## one more worker against TEMPORAL_ADDRESS
	$(BIN)/python worker.py

test: setup         ## the whole suite (PostgreSQL too when TEST_DATABASE_URL is set)
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: setup        ## imaging benchmark; writes bench/results/
	$(BIN)/python -m bench.imaging

bench-api: setup    ## API load benchmark on PostgreSQL (BENCH_DATABASE_URL names the server); writes bench/results/
	$(BIN)/python -m bench.api

bench-pipeline: setup  ## batches in each mode and API latency, on PostgreSQL (--postgres names the server)
	$(BIN)/python -m bench.pipeline

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
