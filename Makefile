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

# The in-process benchmarks (each starts what it needs, ~25 min idle, more on first run to fill bench/.cache);
# each prints its tables and writes bench/results/<name>.json. One of them: `make bench BENCHES=parse_throughput`.
BENCHES ?= parse_throughput retrieval_latency ingest_throughput embedding_backends answer_modes
BENCH_ARGS_answer_modes ?= --compare-limit 40
bench: install
	$(foreach b,$(BENCHES),$(VENV)/bin/python -m bench.$(b) $(BENCH_ARGS_$(b)) &&) true

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
