# keras-ssr: `make run` and `make test` each set up a local virtualenv (.venv)
# on first use, idempotently, then do their job. Pass extra flags with ARGS=...
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-slow lint format

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m trainers.run $(ARGS)

# Two worker processes, one test file each at a time (module fixtures stay in
# one process); tests that spawn processes pick free ports.
test: $(STAMP) lint
	$(PY) -m pytest -n 2 --dist loadfile $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
