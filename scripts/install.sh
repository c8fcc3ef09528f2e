#!/usr/bin/env bash
# Installs the platform and its test tools into .venv. Idempotent: re-runs only when pyproject.toml changed.
# torch is pinned to the local CPU wheel first; any other torch would pull gigabytes of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "torch==2.13.0"
# llama-cpp-python compiles from source on first install (about 5 minutes; pip caches the wheel).
"$VENV/bin/pip" install --quiet -e ".[dev]"
rm -f "$VENV"/.installed-*
touch "$stamp"
