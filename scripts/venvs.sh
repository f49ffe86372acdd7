# Where scripts/setup.sh puts the virtualenvs and scripts/test.sh finds them (sourced by both).
# Outside the checkout: the sandbox mounts the interpreter's environment read-only, and a
# virtualenv inside the project would make the project's folder visible to generated code.
VUL2SAFE_DATA="${XDG_DATA_HOME:-$HOME/.local/share}/vul2safe"
VENV="${VUL2SAFE_VENV:-$VUL2SAFE_DATA/venv}"
VLLM_VENV="${VUL2SAFE_VLLM_VENV:-$VUL2SAFE_DATA/venv-vllm}"
