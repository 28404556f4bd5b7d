# One entry point for every check, used by people and CI alike.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install deps test-deps lint format typecheck test test-unit test-acceptance check quickstart bench clean

deps:            ## system packages: podman, runc, busybox (needs root or sudo)
	scripts/install-deps

test-deps:       ## the same, and chromium for the dashboard's browser tests
	scripts/install-deps --browser

install:         ## the virtualenv with jobd, jobctl and the dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'

$(BIN)/pytest $(BIN)/ruff $(BIN)/mypy:
	$(MAKE) install

lint: $(BIN)/ruff
	$(BIN)/ruff check jobd jobctl tests bench
	$(BIN)/ruff format --check jobd jobctl tests bench

format:
	$(BIN)/ruff format jobd jobctl tests bench
	$(BIN)/ruff check --fix jobd jobctl tests bench

typecheck: $(BIN)/mypy
	$(BIN)/mypy

test: $(BIN)/pytest  ## the whole suite: unit, integration (real podman), acceptance (real jobd)
	$(BIN)/pytest

test-unit: $(BIN)/pytest
	$(BIN)/pytest tests/unit

test-acceptance: $(BIN)/pytest
	$(BIN)/pytest tests/acceptance

check: lint typecheck test

quickstart:      ## set everything up, start jobd, run a first job on the embedded image
	scripts/quickstart

bench: $(BIN)/pytest  ## jobd against podman, the podman API, Slurm and task-spooler (not in CI)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
