# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the tests and benchmarks need; installed by `make test` only
# when missing. postfix: only its smtp-sink binary (bench/dispatch.py's peer);
# dovecot-imapd: the IMAP server of the bounce poller's tests; chromium: the
# browser the web UI tests drive through Playwright.
DEBIAN_PACKAGES := spamassassin postfix dovecot-imapd chromium

.PHONY: run test lint typecheck unit install install-dev system-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/sluice init
	$(BIN)/sluice demo --if-empty
	$(BIN)/sluice run

system-packages:
	@scripts/install-debian-packages.sh $(DEBIAN_PACKAGES)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy app jobs bounce config

test: $(VENV)/.installed-dev system-packages lint typecheck
	$(BIN)/pytest
