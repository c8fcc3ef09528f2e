# The two commands the README starts with: `make run` and `make test`. Both install first.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
VENV ?= .venv

.PHONY: install run test lint bench

install:
	./scripts/install.sh

run: install
	$(VENV)/bin/ragctl serve

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
