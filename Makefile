# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
STAMP_VENV := $(VENV)/.installed
# The official Azure CLI, in an environment of its own: today's way in the benchmark
# and a compatibility test against the stand-in. About 700 MB.
VENV_AZ := .venv-az
AZURE_CLI_VERSION := 2.91.0
STAMP_AZ := $(VENV_AZ)/.installed-$(AZURE_CLI_VERSION)
STAMP_NODE := node_modules/.installed
STAMP_SYSTEM := .standin-system-deps
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup demo test lint typecheck unit bench az-cli standin-start standin-stop clean lock

help:
	@echo "make demo   set up, start the local stand-in, run three syncs end to end, stop"
	@echo "make test   set up, lint, type-check and run every test"
	@echo "make bench  set up and run the benchmark against the stand-in"
	@echo "make az-cli install the Azure CLI into $(VENV_AZ) (make test and make bench do)"
	@echo "make standin-start / make standin-stop   run the stand-in by hand"

$(STAMP_VENV): requirements.txt requirements-dev.txt scripts/find-python
	@python=$$(scripts/find-python) && echo "creating $(VENV) with $$python" && "$$python" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(STAMP_AZ): scripts/find-python
	@python=$$(scripts/find-python) && echo "creating $(VENV_AZ) with $$python" && "$$python" -m venv $(VENV_AZ)
	$(VENV_AZ)/bin/python -m pip install --quiet --disable-pip-version-check azure-cli==$(AZURE_CLI_VERSION)
	@touch $@

az-cli: $(STAMP_AZ)

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

$(STAMP_SYSTEM): scripts/install-system-deps
	scripts/install-system-deps
	@touch $@

setup: $(STAMP_VENV) $(STAMP_NODE) $(STAMP_SYSTEM)

demo: setup
	$(PY) -m standin.demo

lint: $(STAMP_VENV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP_VENV)
	$(VENV)/bin/mypy

test: setup az-cli lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup az-cli
	$(PY) -m bench $(BENCH_ARGS)

standin-start: setup
	$(PY) -m standin start

standin-stop: $(STAMP_VENV)
	$(PY) -m standin stop

lock:
	rm -rf .lock-venv && "$$(scripts/find-python)" -m venv .lock-venv
	.lock-venv/bin/pip install --quiet $$(grep -E '^(azure-functions|azure-identity|azure-mgmt-containerregistry|azure-storage-blob|azure-storage-queue|azure-core)==' requirements.txt)
	.lock-venv/bin/pip freeze
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(VENV_AZ) node_modules $(STAMP_SYSTEM) .mypy_cache .ruff_cache .pytest_cache .standin
