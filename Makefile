# `make up` serves the example app; `make test` runs the suite. Both create .venv when needed.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium

.PHONY: up test lint bench clean chromium pyc

$(STAMP): pyproject.toml host/runtime/_wasmcall.c
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(MAKE) pyc
	touch $(STAMP)

# bytecode for host/ written ahead: an editable install has none, and where
# PYTHONDONTWRITEBYTECODE is set every start would compile ~120 modules (~0.2 s)
pyc:
	$(PY) -m compileall -q host

# `make up PORT=8081 DATA=/tmp/nimbus-data` serves on another port from another data dir.
# Beside the server, the example app's payment service stand-in (host/examples/payments.py)
# listens on 127.0.0.1:$(PAYMENT_PORT) and, on a fresh data dir, sets the secret
# PAYMENT_API_KEY to its key (PAYMENT_API_KEY from the environment, or sk_test_nimbus_example).
PORT ?= 8080
DATA ?= .nimbus
PAYMENT_PORT ?= 8090

up: $(STAMP) pyc
	$(PY) -m host.examples.payments --port $(PAYMENT_PORT) \
		--nimbus http://127.0.0.1:$(PORT) --data $(DATA) & \
	trap 'kill $$! 2>/dev/null' EXIT; \
	PAYMENT_PORT=$(PAYMENT_PORT) $(VENV)/bin/nimbus up functions --data $(DATA) \
		--host 127.0.0.1 --port $(PORT)

test: $(STAMP) chromium
	$(PY) -m pytest

# the console's browser tests drive Debian's Chromium (Playwright never downloads one)
chromium:
	@test -x $(CHROMIUM) || { test "$$(id -u)" = 0 && apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
		echo "warning: $(CHROMIUM) is missing; as root: apt-get install chromium"

lint: $(STAMP)
	$(VENV)/bin/ruff check host bench tests
	$(VENV)/bin/ruff format --check host bench tests
	$(VENV)/bin/mypy host

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf .nimbus .pytest_cache .mypy_cache .ruff_cache
