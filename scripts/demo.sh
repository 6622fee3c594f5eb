#!/usr/bin/env bash
# The README's main job: install, then train action-only and KARMA on the tiny preset
# (MovieLens-100k), capture, analyze, and write runs/tiny-report/ (summary, PDF, figures). Nothing
# tracked is rewritten: the committed reports/tiny-ml100k/ came from --report-dir reports/tiny-ml100k.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
KP=.venv/bin/karma-probe
$KP data stats
$KP reproduce --preset tiny "$@"
$KP check runs/tiny-karma-s0 --baseline reports/baselines/tiny.json
$KP ls
echo "next: .venv/bin/karma-probe dashboard --runs runs"
