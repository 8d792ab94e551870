# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first and pinned, so pip does not pull a multi-GB CUDA build for the `torch>=2.3` range.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check xtra tests benchmarks
	$(BIN)/ruff format --check xtra tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format xtra tests benchmarks
	$(BIN)/ruff check --fix xtra tests benchmarks

test: lint
	$(BIN)/python -m pytest -n 2 -q

demo: $(STAMP)
	$(BIN)/xtra demo

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
