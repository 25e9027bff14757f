# Two commands (see README): `make book` and `make test`. Both set up .venv first; `make lab` opens the chapters in JupyterLab.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
JOBS ?= 1
BIN := $(VENV)/bin

.PHONY: setup book test lab clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[book,test,cluster]"
	touch $@

book: setup
	$(BIN)/xray-book build --profile $(PROFILE) --jobs $(JOBS)

# JupyterLab on the chapters, with this environment's Python (and xrayutils) as their kernel; LAB_ARGS adds options.
lab: setup
	$(BIN)/jupyter lab notebooks $(LAB_ARGS)

test: setup
	$(BIN)/ruff check xrayutils tests benchmarks notebooks
	$(BIN)/python -m pytest -n auto --dist worksteal  # one worker per core (tracing the nine CoronaHack models is single-threaded Python); an idle worker takes queued tests from a busy one

clean:
	rm -rf _build outputs
