# Two commands (see README): `make book` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
BIN := $(VENV)/bin

.PHONY: setup book test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[book,test]"
	touch $@

book: setup
	$(BIN)/xray-book build --profile $(PROFILE)

test: setup
	$(BIN)/ruff check xrayutils tests benchmarks notebooks
	$(BIN)/python -m pytest

clean:
	rm -rf _build outputs
