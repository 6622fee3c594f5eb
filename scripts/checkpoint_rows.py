"""Print checkpoints.md "Runs" table rows for run directories, from what each run recorded.

    .venv/bin/python scripts/checkpoint_rows.py runs/smollm2-*-s? runs/smollm2-base \
        --command "karma-probe reproduce --preset smollm2 --conditions action gen rec karma --seeds 0 1 2 --trajectory action karma"

Columns: run, condition, seed, steps, git sha (of the training, else of the analysis), config
hash, headline (test retrieval and a few collapse metrics from analysis.json / metrics.json),
where the weights are, and the command that made it.
"""

from __future__ import annotations

import argparse
import sys

from karma_probe.analyzers.catalogue import format_value
from karma_probe.core.errors import BadInput
from karma_probe.report.results import load_run

HEADLINE = ("sink_mass", "aniso_cos", "recon_token_acc_gain", "fact_acc", "hr@10")


def row(path: str, command: str) -> str:
    run = load_run(path)
    cfg, a = run.config, run.analysis.run
    sha = str(cfg.get("git_sha") or a.get("git_sha") or "?")[:10]
    steps = 0 if run.condition == "base" else (cfg.get("train") or {}).get("steps", "?")  # base: never trained
    head = [f"{m} {format_value(run.summary[m])}" for m in HEADLINE if m in run.summary]
    test_all = ((run.metrics or {}).get("test_all") or {}).get("hr@10")
    if test_all is not None:
        head.append(f"hr@10 without exclusion {format_value(test_all)}")
    seed = run.seed if run.seed is not None else 0
    return (f"| {run.name} | {run.condition} | {seed} | {steps} | `{sha}` | `{cfg.get('config_hash', '?')}` | "
            f"{', '.join(head)} | `{run.path}/checkpoint` (not committed) | `{command}` |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories")
    ap.add_argument("--command", required=True, help="the command that made the runs")
    args = ap.parse_args(argv)
    try:
        rows = [row(p, args.command) for p in args.runs]
    except BadInput as e:
        print(f"checkpoint_rows: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
