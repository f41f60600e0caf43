# The two commands: `make run` and `make test`. Everything they need is installed from the lock files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export INGESTD_DATABASE_URL ?= sqlite:///./data/ingestd.db

.PHONY: run test install install-dev sys-deps docs lint typecheck pytest client-test ts-test bench clean lock browser-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-installed: requirements/run.lock pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements/run.lock
	$(BIN)/pip install -q --no-deps -e . -e clients/python
	touch $@

$(VENV)/.dev-installed: requirements/dev.lock pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements/dev.lock
	$(BIN)/pip install -q --no-deps -e . -e clients/python
	touch $@ $(VENV)/.run-installed

install: $(VENV)/.run-installed

install-dev: $(VENV)/.dev-installed

run: install
	mkdir -p data
	$(BIN)/ingestd migrate
	exec $(BIN)/ingestd serve --host $(HOST) --port $(PORT)

lint: install-dev
	$(BIN)/ruff check src tests benchmarks clients/python tools examples
	$(BIN)/ruff format --check src tests benchmarks clients/python tools examples
	$(BIN)/lint-imports

typecheck: install-dev
	$(BIN)/mypy --strict src clients/python/src

# Debian packages the tests drive (CI runs as root on a fresh machine): installed only when
# missing. systemd-analyze checks deploy/systemd; chromium renders /docs and the console;
# tinyproxy is the forward proxy the outbound-proxy tests send webhooks through; prometheus
# (promtool and the server) checks, unit-tests and runs the alert rules of deploy/prometheus;
# strace makes fsync fail for the fault suite (tests/faults).
SYS_DEPS := systemd-analyze:systemd chromium:chromium chromedriver:chromium-driver tinyproxy:tinyproxy \
	promtool:prometheus strace:strace
sys-deps:
	@missing=""; for pair in $(SYS_DEPS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing; fi

# The console's accessibility check: axe-core from npm into a test-only folder, pinned by
# its package-lock.json (tests/browser injects it into the pages; it is never shipped).
browser-deps:
	@[ -f tests/browser/node_modules/axe-core/axe.min.js ] || \
		(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# Two xdist workers for the suite (most tests wait on servers, receivers and databases),
# then the tests marked `serial` alone: they stop PostgreSQL or Redis, or judge recovery.
# The serial part runs even when the first failed; the first failure's status is kept.
PYTEST_WORKERS ?= 2
pytest: install-dev sys-deps browser-deps
	$(BIN)/python tests/services.py
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m "not serial"; parallel=$$?; \
		$(BIN)/pytest -q -m serial && exit $$parallel

# The Python SDK alone: a fresh venv, `pip install ./clients/python`, a check that nothing
# of the server came with it, then its tests there (pytest at the locked versions).
CLIENT_VENV := .venv-client
CLIENT_TEST_PINS = $(shell grep -E '^(pytest|pluggy|iniconfig|packaging|pygments)==' requirements/dev.lock)

client-test:
	rm -rf $(CLIENT_VENV)
	$(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/pip install -q ./clients/python
	$(CLIENT_VENV)/bin/python clients/python/check_install.py
	$(CLIENT_VENV)/bin/pip install -q $(CLIENT_TEST_PINS)
	cd clients/python && ../../$(CLIENT_VENV)/bin/python -m pytest -q -p no:cacheprovider

ts-test: install-dev
	@if [ -d clients/typescript ]; then $(MAKE) -C clients/typescript test; fi

# The documentation site, generated references included: a broken link fails the build.
docs: install-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck pytest client-test ts-test docs

bench: install-dev
	$(BIN)/python -m benchmarks.run

lock:
	uv pip compile pyproject.toml --extra postgres --extra redis --extra bench -o requirements/run.lock --python-version 3.11
	uv pip compile pyproject.toml --all-extras -o requirements/dev.lock --python-version 3.11

clean:
	rm -rf $(VENV) $(CLIENT_VENV) .mypy_cache .pytest_cache .ruff_cache
