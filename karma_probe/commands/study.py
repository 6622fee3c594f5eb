"""One study report from runs that separate reproductions made, one comparison per training regime.

A regime is what the runs train (config ``train_layers``: the top k decoder layers, or 0 for every
layer). Each regime's runs (every condition and seed, and the step-0 / untouched references whose
config carries that regime) get the report ``reproduce`` writes, in OUT/<top8 | full>/, with their
own Holm-corrected verdict, action-only vs KARMA paired by seed. OUT/ holds summary.json
(schema karma_probe.study/1, every regime's summary), summary.md, claims_forest.png (every
regime's verdict in one picture), trajectory_<metric>.png (action-only and KARMA over training in
every regime) and report.pdf. Use it when the conditions were trained by different commands, e.g.
KARMA with a --set and --tag that action-only does not share (study v3). Needs only analyzed runs,
not torch; nothing is written to OUT until every page is drawn.
"""

from __future__ import annotations

EXAMPLES = """examples:
  karma-probe study runs/tiny-action-s? runs/tiny-karma-s? runs/tiny-step0 runs/tiny-untouched --out reports/tiny-study
  karma-probe study runs/smollm2-action-s? runs/smollm2-karma-lam0.1-s? runs/smollm2-step0 runs/smollm2-untouched \\
      runs/smollm2-full-* --out reports/smollm2-ml100k-v3 --calibration reports/calibration-smollm2/calibration.json
"""


def add_arguments(p):
    p.add_argument("runs", nargs="+", metavar="RUN", help="analyzed run directories: every condition, seed and regime, and the references")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="the report folder (files of an earlier report there are replaced)")
    p.add_argument("--calibration", metavar="FILE",
                   help="calibrate's calibration.json: each claim's detection limit also as a planted dose")


def run(args) -> int:
    from karma_probe.workflows.regimes import write_study

    top = write_study(args.runs, args.out, calibration=args.calibration)
    for name, summary in top["regimes"].items():
        claims = summary.get("verdict") or []
        held = sum(bool((e.get("holm") or {}).get("holds")) for e in claims)
        print(f"{name}: {len(summary.get('runs', {}))} runs, {held} of {len(claims)} claims hold after Holm's correction")
    print(f"wrote {args.out}/summary.json, summary.md, report.pdf ({len(top['report']['pages'])} pages) "
          f"and {len(top['figures'])} figures")
    return 0
