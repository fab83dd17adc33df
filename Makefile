# The two commands a new user needs: `make run` and `make test`. Both set everything up themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export MIMICSAFE_HOME ?= ./mimicsafe-data

.PHONY: run test lint bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) is required (set PYTHON=/path/to/python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install when pyproject.toml changes. torch is pinned to the CPU build (torch==2.13.0) there.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/mimicsafe db upgrade
	$(BIN)/mimicsafe serve

test: $(VENV)/.installed-dev
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check mimicsafe ownership ui tests benchmarks
	$(BIN)/mypy mimicsafe ownership ui

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/pip install --quiet --no-deps 'invisible-watermark==0.2.0'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
