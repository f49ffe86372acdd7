#!/usr/bin/env bash
# Run every test: the vLLM ones in the vLLM virtualenv, then the whole suite (lint included:
# tests/test_repository.py runs ruff) in the main one. Extra arguments go to the main run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venvs.sh

# Each run as if its environment were activated: tests call the tools' own CLIs too.
if [ "${VUL2SAFE_SETUP_VLLM:-1}" != 0 ]; then
    (PATH="$VLLM_VENV/bin:$PATH" VIRTUAL_ENV="$VLLM_VENV" "$VLLM_VENV/bin/python" -m pytest -m vllm)
fi
PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV" "$VENV/bin/python" -m pytest "$@"
