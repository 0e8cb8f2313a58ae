# threattune: `make demo` sets up .venv and trains the NSL-KDD model; `make test` runs the tests.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
THREATTUNE_DATA ?= $(abspath ../shared/data)
export THREATTUNE_DATA

.PHONY: demo test lint venv benchmark clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: venv
	$(BIN)/threattune data verify nsl-kdd
	$(BIN)/threattune train nsl-kdd --output runs/demo

test: venv
	$(BIN)/pytest -n 2 --durations=15

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts

benchmark: venv
	$(BIN)/python benchmarks/scoring_throughput.py

clean:
	rm -rf runs report mlruns.db mlartifacts .pytest_cache service.db* verdicts.db*
