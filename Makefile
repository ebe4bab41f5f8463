# The two commands of the README: `make up` and `make test`. Both install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEBS := softhsm2 postgresql

.PHONY: install up test test-fast lint bench bench-quick system-deps kafka-jars clean

install: $(STAMP) kafka-jars

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

kafka-jars: $(STAMP)
	$(VENV)/bin/exchange kafka fetch

# Debian packages the tests use: SoftHSM2 (PKCS#11 KMS contract tests), PostgreSQL (multi-gateway).
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

up: install
	$(VENV)/bin/exchange up

test: install system-deps
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q tests/unit

lint: install
	$(VENV)/bin/ruff check exchange schemas dataplane gateway consent audit cli tests bench
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench.run --out bench/results/latest.json

bench-quick: install
	$(PY) -m bench.run --quick --out bench/results/quick.json

clean:
	rm -rf $(VENV) .exchange .pytest_cache .mypy_cache .ruff_cache
