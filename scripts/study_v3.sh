#!/usr/bin/env bash
# Study v3 (issue 26), step by step, resumable: every command skips finished stages and resumes training
# from the last checkpoint. Run it from a frozen worktree of the code (edits mid-study would change
# lazily imported modules), one torch thread per run, in the background:
#   git worktree add --detach /work/study HEAD
#   cd /work/study && RUNS=/work/main/runs nohup bash scripts/study_v3.sh select > /work/main/runs/study-v3.log 2>&1 &
# Two cores: start the same step a second time (same command, its own log); each run is claimed by the
# process that works on it, so the second instance trains the runs the first has not claimed and
# skips the rest (each writes the report of the runs finished so far; the last to finish, all of them).
# Steps:
#   select  seed 0, top-8 layers: action-only, KARMA balanced (rho 0.25) and KARMA plain (lambda 0.1),
#           compared on VALIDATION HR@10 and lm_ppl (never test) to choose the KARMA setting
#   top8 KARMA_SET TAG   action-only vs the chosen KARMA, seeds 0-2, top-8 layers
#   full KARMA_SET TAG   the same with every decoder layer trained (preset smollm2-full)
#   top8 | full          (no KARMA setting) only the action-only runs, which do not depend on the
#                        selection: they can train on the second core while "select" finishes
#   steps23 KARMA_SET TAG  top8, then full: an instance that finishes its top-8 run moves on to the
#                        every-layer runs instead of leaving its core idle while the other finishes
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-/work/main/.venv/bin/python}"
RUNS="${RUNS:-runs}"
export PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
KP=("$PY" -m karma_probe reproduce --threads 1 --no-progress --runs-root "$RUNS")
case "${1:-}" in
  select)
    "${KP[@]}" --preset smollm2 --conditions action --seeds 0 --report-dir "$RUNS/v3-select-action"
    "${KP[@]}" --preset smollm2 --conditions karma --seeds 0 --set balance_rho=0.25 --tag rho0.25 --no-base \
      --report-dir "$RUNS/v3-select-rho0.25"
    "${KP[@]}" --preset smollm2 --conditions karma --seeds 0 --set reg_weight=0.1 --tag lam0.1 --no-base \
      --report-dir "$RUNS/v3-select-lam0.1" ;;
  steps23)
    [ $# -eq 3 ] || { echo "usage: $0 steps23 KEY=VALUE TAG" >&2; exit 2; }
    bash scripts/study_v3.sh top8 "$2" "$3"
    exec bash scripts/study_v3.sh full "$2" "$3" ;;
  top8|full)
    preset=smollm2; [ "$1" = full ] && preset=smollm2-full
    "${KP[@]}" --preset "$preset" --conditions action --seeds 0 1 2 --trajectory action \
      --report-dir "$RUNS/v3-$1-action"
    [ $# -eq 1 ] && exit 0
    set_arg="${2:?the chosen KARMA setting, e.g. balance_rho=0.25}"; tag="${3:?its tag, e.g. rho0.25}"
    "${KP[@]}" --preset "$preset" --conditions karma --seeds 0 1 2 --set "$set_arg" --tag "$tag" --no-base \
      --trajectory karma --report-dir "$RUNS/v3-$1-karma" ;;
  *) echo "usage: $0 select | top8 [KEY=VALUE TAG] | full [KEY=VALUE TAG] | steps23 KEY=VALUE TAG" >&2; exit 2 ;;
esac
