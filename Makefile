# The two commands the README starts with: `make run` and `make test`. Both install first.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
VENV ?= .venv

.PHONY: install run test test-fast lint bench

install:
	./scripts/install.sh

run: install
	$(VENV)/bin/ragctl serve

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The pure-logic tests only (no model, no server): under a minute.
test-fast: install
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
