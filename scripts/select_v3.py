"""Study v3, step 1: choose the KARMA setting on seed 0 by validation, never test.

Reads the seed-0 runs of action-only and each KARMA candidate and prints, per run, validation
HR@10 (metrics.json ``valid``: the second-last item of each of the 943 users, history excluded)
and lm_ppl (analysis.json, with its interval). The rule, fixed before any run finished: the
candidate with the higher validation HR@10 wins; when the two are within 0.005 of each other (about
5 of 943 users), the one with the lower lm_ppl wins. When every candidate's validation HR@10 is
below action-only's, it says so: the issue asks for a third setting then.

    python scripts/select_v3.py --runs runs
    python scripts/select_v3.py --runs runs --candidates karma-rho0.25 karma-lam0.1 --action action
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TIE = 0.005


def _read(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    analysis = json.loads((run / "analysis.json").read_text()) if (run / "analysis.json").is_file() else {}
    ppl = (analysis.get("summary") or {}).get("lm_ppl")
    ci = (analysis.get("intervals") or {}).get("lm_ppl")
    return {"valid_hr@10": metrics["valid"]["hr@10"], "lm_ppl": ppl, "lm_ppl_ci": ci}


def choose(action: dict, candidates: dict[str, dict]) -> tuple[str, str]:
    """(chosen name, why) by the rule in the module docstring."""
    ranked = sorted(candidates, key=lambda n: -candidates[n]["valid_hr@10"])
    best = ranked[0]
    if len(ranked) > 1:
        second = ranked[1]
        gap = candidates[best]["valid_hr@10"] - candidates[second]["valid_hr@10"]
        if gap < TIE and (candidates[second]["lm_ppl"] or float("inf")) < (candidates[best]["lm_ppl"] or float("inf")):
            best = second
            why = f"validation HR@10 within {TIE} of {ranked[0]}; lower lm_ppl"
        else:
            why = f"higher validation HR@10 (+{gap:.4f} over {second})" if gap >= TIE else \
                f"validation HR@10 within {TIE}; lm_ppl not lower for {second}"
    else:
        why = "the only candidate"
    if all(c["valid_hr@10"] < action["valid_hr@10"] for c in candidates.values()):
        why += "; every candidate is below action-only on validation HR@10: add a third setting (issue 26)"
    return best, why


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--preset", default="smollm2")
    ap.add_argument("--action", default="action")
    ap.add_argument("--candidates", nargs="+", default=["karma-rho0.25", "karma-lam0.1"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = [args.action, *args.candidates]
    dirs = {n: Path(args.runs) / f"{args.preset}-{n}-s{args.seed}" for n in names}
    missing = [str(d) for d in dirs.values() if not (d / "metrics.json").is_file()]
    if missing:
        print(f"select_v3: not trained and evaluated yet: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = {n: _read(d) for n, d in dirs.items()}
    print("| run | validation HR@10 | lm_ppl [95 % CI] |\n|---|---|---|")
    for n, r in rows.items():
        ci = f" [{r['lm_ppl_ci'][0]:.2f}, {r['lm_ppl_ci'][1]:.2f}]" if r["lm_ppl_ci"] else ""
        ppl = f"{r['lm_ppl']:.2f}{ci}" if r["lm_ppl"] is not None else "not analyzed"
        print(f"| {n} | {r['valid_hr@10']:.4f} | {ppl} |")
    best, why = choose(rows[args.action], {n: rows[n] for n in args.candidates})
    print(f"chosen: {best} ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
