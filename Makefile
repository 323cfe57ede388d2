# govern: `make run` serves the demo gateway, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the test suite needs (browser tests, the chain node's npm tools come later).
SYSTEM_PACKAGES :=
export GOVERN_HOME ?= $(CURDIR)/.govern

.PHONY: install system-deps run test lint typecheck pytest bench clean docker

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

run: install
	$(BIN)/govern db upgrade
	$(BIN)/govern demo load
	$(BIN)/govern serve --host 127.0.0.1 --port 8000 --flight-port 8815

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy govern

pytest: install
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: install
	$(BIN)/python bench/decisions.py

docker:
	docker build -t govern:dev .

clean:
	rm -rf $(VENV) .govern
