"""Print a run's test retrieval next to its baselines, with 95 % paired bootstrap CIs over users.

    .venv/bin/python scripts/retrieval_vs_baselines.py runs/smollm2-action-s0 [--sasrec-hr10 0.136]

For both protocols (``test``: history items excluded from the candidates; ``test_all``: nothing
excluded, RecBole's full sort) it prints the run's HR@10/50/200, NDCG@10 and MRR with a CI, the
random / popularity / Markov baselines on the same users, and run − baseline with a paired CI.
``--sasrec-hr10`` adds a reference number measured elsewhere (no CI: no per-user ranks).
Reads metrics.json only (torch-free).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from karma_probe.analyzers.catalogue import format_value
from karma_probe.report import stats
from karma_probe.report.results import load_metrics

METRICS = ("hr@10", "hr@50", "hr@200", "ndcg@10", "mrr")


def _ci(iv) -> str:
    return f"[{format_value(iv.low)}, {format_value(iv.high)}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--sasrec-hr10", type=float, help="a SASRec HR@10 measured without history exclusion")
    args = ap.parse_args()
    m = load_metrics(Path(args.run))
    if not m or "ranks" not in m or "baselines" not in m:
        raise SystemExit(f"{args.run}: metrics.json without per-user ranks and baselines (a run from before them?)")
    for split in ("test", "test_all"):
        ranks, base = m["ranks"][split], m["baselines"]
        print(f"\n{split} ({'history items excluded' if split == 'test' else 'nothing excluded'}), "
              f"{len(ranks)} users")
        print("| metric | run [95 % CI] | random | popularity | Markov | run − popularity [CI] | run − Markov [CI] |")
        print("|---|---|---|---|---|---|---|")
        for name in METRICS:
            row = [f"`{name}`", f"{format_value(m[split][name])} {_ci(stats.rank_metric_ci(ranks, name))}",
                   format_value(base["random"][split].get(name))]
            row += [format_value(base[b][split][name]) for b in ("popularity", "markov")]
            for b in ("popularity", "markov"):
                d = m[split][name] - base[b][split][name]
                row.append(f"{format_value(d)} {_ci(stats.rank_metric_diff(ranks, base[b]['ranks'][split], name))}")
            print("| " + " | ".join(row) + " |")
        if split == "test_all" and args.sasrec_hr10 is not None:
            print(f"\nSASRec (RecBole) HR@10 without history exclusion, measured elsewhere: {args.sasrec_hr10}; "
                  f"this run {format_value(m['test_all']['hr@10'])} "
                  f"({'above' if m['test_all']['hr@10'] > args.sasrec_hr10 else 'not above'})")


if __name__ == "__main__":
    main()
