#!/usr/bin/env bash
# Installs the platform and its test tools into .venv. Idempotent: re-runs only when pyproject.toml or this
# script changed.
# torch is pinned to the local CPU wheel first; any other torch would pull gigabytes of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.installed-$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "torch==2.13.0"
# llama-cpp-python compiles llama.cpp from source (about 6-8 minutes), for a portable x86-64-v3 CPU (AVX2,
# FMA, F16C; no AVX-512 or AMX): a native build on a VM whose CPU advertised AMX died with SIGILL in decode.
# Never from pip's wheel cache, which keys builds by version only and may hold such a native one.
llama=$(grep -o '"llama-cpp-python\[server\][^"]*"' pyproject.toml | tr -d '"')
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$VENV/bin/pip" install --quiet --no-cache-dir --force-reinstall --no-deps "$llama"
"$VENV/bin/pip" install --quiet -e ".[dev]"
rm -f "$VENV"/.installed-*
touch "$stamp"
