#!/usr/bin/env bash
# The README's test command: install everything, then run the whole test suite offline on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# pdftoppm renders the PDF report's pages in tests/test_report.py; installed only when missing and root.
command -v pdftoppm >/dev/null || { [ "$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null; } || echo "test.sh: pdftoppm missing (apt-get install poppler-utils); the page-rendering test will be skipped" >&2
# chromium runs the dashboard's end-to-end test (tests/test_dashboard.py, marker "browser"); when root
# and missing, installed here. That test fails as root without it and skips otherwise.
command -v chromium >/dev/null || { [ "$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "test.sh: chromium missing (apt-get install chromium); the browser test fails as root, skips otherwise" >&2
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Every tier in one pytest call (one summary line): the expression overrides pyproject's default
# `-m "not slow and not smollm2 and not browser"` (the fast tier a plain `pytest` runs).
exec .venv/bin/python -m pytest -q -m "slow or smollm2 or browser or not (slow or smollm2 or browser)" "$@"
