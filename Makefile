# IRE developer commands. `make demo` and `make test` set up everything they need on a
# fresh Debian 12 machine with Python 3.11 (run as root, or with sudo for apt-get).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages the test suite needs (installed only when missing).
TEST_DEBS := redis-server
# The sandbox escape suite runs its probes with Debian's /usr/bin/python3 (`ire sandbox run`).
TEST_DEBS += python3

.PHONY: demo test lint protos bench clean debs

$(VENV)/.runtime: pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { apt-get update -q && apt-get install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

debs:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -q && apt-get install -y -q $$missing; fi

demo: $(VENV)/.runtime
	$(VENV)/bin/ire demo

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check supervisor sandbox protos/generate.py tests bench
	$(VENV)/bin/mypy

test: $(VENV)/.dev debs lint
	$(PY) -m pytest -q

protos: $(VENV)/.dev
	$(PY) -m protos.generate

bench: $(VENV)/.dev
	$(PY) -m bench.all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
