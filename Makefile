# The two commands of the README: `make up` and `make test`. Both install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HASH := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
RUN_STAMP := $(VENV)/.installed-run-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)
# fonts-wqy-microhei: CJK glyphs for the console screenshots taken by the browser tests
# curl, jq: the plain-HTTP example client (examples/) the tests run
DEBS := softhsm2 postgresql chromium fonts-wqy-microhei curl jq mariadb-server

.PHONY: install install-test up test test-fast lint bench bench-quick system-deps kafka-jars keycloak-dist clean

# What running needs (make up); the test and benchmark extras come on top (make test).
install: $(RUN_STAMP) kafka-jars
install-test: $(TEST_STAMP) kafka-jars

$(RUN_STAMP): pyproject.toml
	@echo "==> [1/3] Python virtualenv in $(VENV)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PIP) install -q --upgrade pip
	@echo "==> [2/3] exchange and its runtime dependencies (a minute on a fresh machine)"
	@$(PIP) install -q -e .
	@rm -f $(VENV)/.installed-run-*
	@touch $@

$(TEST_STAMP): $(RUN_STAMP)
	@echo "==> test and benchmark extras"
	@$(PIP) install -q -e '.[test,bench]'
	@rm -f $(VENV)/.installed-test-*
	@touch $@

kafka-jars: $(RUN_STAMP)
	@echo "==> [3/3] Apache Kafka jars (Maven Central, cached in ~/.cache/exchange)"
	@$(VENV)/bin/exchange kafka fetch

# The real Keycloak the `keycloak`-marked tests start (~165 MB zip; a test helper, not runtime).
keycloak-dist: $(TEST_STAMP)
	@echo "==> Keycloak distribution for the tests (Maven Central, cached in ~/.cache/exchange)"
	@$(PY) -c "from tests.support.keycloak import ensure_dist; ensure_dist()"

# Debian packages the tests use: SoftHSM2 (PKCS#11 KMS contract tests), PostgreSQL (multi-gateway),
# curl and jq (the examples and the README tutorial, run by the e2e tests), MariaDB (the import's
# MySQL source).
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

up: install
	$(VENV)/bin/exchange up

test: install-test system-deps keycloak-dist
	$(VENV)/bin/pytest -q --durations=40

test-fast: install-test
	$(VENV)/bin/pytest -q tests/unit

lint: install-test
	$(VENV)/bin/ruff check exchange schemas dataplane gateway consent audit cli node ingest tests bench
	$(VENV)/bin/mypy

bench: install-test
	$(PY) -m bench.run --out bench/results/latest.json

bench-quick: install-test
	$(PY) -m bench.run --quick --out bench/results/quick.json

clean:
	rm -rf $(VENV) .exchange .pytest_cache .mypy_cache .ruff_cache
