#!/usr/bin/env bash
# Run every test: the vLLM ones in the vLLM virtualenv, then the whole suite (lint included:
# tests/test_repository.py runs ruff) in the main one. Extra arguments go to the main run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VUL2SAFE_VENV:-.venv}"
VLLM_VENV="${VUL2SAFE_VLLM_VENV:-.venv-vllm}"

if [ "${VUL2SAFE_SETUP_VLLM:-1}" != 0 ]; then
    "$VLLM_VENV/bin/python" -m pytest -m vllm
fi
"$VENV/bin/python" -m pytest "$@"
