# The two commands of the README. Everything they need is installed from here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= $(CURDIR)/unicomm.toml
PYTEST_ARGS ?=

.PHONY: run test bench system-run system-test system-bench lint format clean

run: system-run $(VENV)/.installed-run node_modules/.installed
	@mkdir -p var
	$(BIN)/unicomm --config $(CONFIG) db upgrade
	$(BIN)/unicomm --config $(CONFIG) demo
	$(BIN)/unicomm --config $(CONFIG) serve

test: system-test $(VENV)/.installed-test node_modules/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks against their anchors (Kamailio for SIP, Kamailio + rtpengine for anchored
# media): bounded, loopback only; about 10 and 7 minutes.
bench: system-bench $(VENV)/.installed-test
	$(BIN)/python bench/sip.py
	$(BIN)/python bench/sip_media.py

system-run:
	@bash scripts/install-system.sh scripts/apt-packages-run.txt

system-test:
	@bash scripts/install-system.sh scripts/apt-packages-run.txt scripts/apt-packages-test.txt

system-bench:
	@bash scripts/install-system.sh scripts/apt-packages-run.txt scripts/apt-packages-test.txt scripts/apt-packages-bench.txt

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

# Browser libraries served by the app (hls.js for the news player), from package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund || npm install --no-audit --no-fund
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@ $(VENV)/.installed-run

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var test-output .pytest_cache
