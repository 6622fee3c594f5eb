#!/usr/bin/env bash
# The README's main job: install everything, then run the pipeline on the tiny preset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
KP=.venv/bin/karma-probe
$KP data stats
$KP model info --model smollm2-135m
