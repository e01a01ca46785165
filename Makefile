# make demo   set up from a fresh clone, then encode + decode a real clip with the shipped model
# make test   set up, then run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: setup demo test test-all bench-speed
setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml bench/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all]" -e bench
	$(PY) -m imfcodec fetch-weights -q
	touch $@

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m "slow or not slow"

bench-speed: setup
	$(PY) bench/speed.py
