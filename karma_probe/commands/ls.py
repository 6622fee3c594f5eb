"""List the runs under a runs directory: condition, seed, which stages exist, headline metrics."""

EXAMPLES = """examples:
  karma-probe ls  # the runs under runs/
  karma-probe ls /data/karma-runs
  karma-probe ls --runs runs/ --json
"""

STAGES = ("checkpoint/config.json", "metrics.json", "capture/manifest.json", "analysis.json")


def add_arguments(p):
    p.add_argument("root", nargs="?", metavar="DIR", help="runs root (default runs/; the same as --runs DIR)")
    p.add_argument("--runs", help="runs root (default runs/)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    import json
    from pathlib import Path

    from karma_probe.analyzers.catalogue import format_value, names
    from karma_probe.errors import BadInput
    from karma_probe.rundir import read_json

    shown = names(listed=True)  # the catalogue's ls columns

    if args.root and args.runs and Path(args.root) != Path(args.runs):
        raise BadInput(f"two runs roots given ({args.root} and --runs {args.runs}); give one")
    root = Path(args.root or args.runs or "runs")
    if not root.is_dir():
        raise BadInput(f"{root}: runs directory not found")
    rows = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()):
        try:
            meta = read_json(d / "config.json")
            summary = read_json(d / "analysis.json").get("summary", {}) if (d / "analysis.json").is_file() else {}
        except BadInput as e:
            rows.append({"run": d.name, "error": str(e)})
            continue
        rows.append({"run": d.name, "condition": meta.get("condition"), "seed": meta.get("seed"),
                     "stages": [s.split("/")[0].split(".")[0] for s in STAGES if (d / s).is_file()],
                     **{m: summary.get(m) for m in shown}})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs under {root}")
        return 0
    head = f"{'run':<28} {'condition':<9} {'seed':>4}  {'stages':<38}" + "".join(f"{m:>18}" for m in shown)
    print(head)
    for r in rows:
        if "error" in r:
            print(f"{r['run']:<28} BROKEN: {r['error']}")
            continue
        vals = "".join(f"{format_value(r[m]):>18}" if isinstance(r[m], (int, float)) else f"{'-':>18}" for m in shown)
        print(f"{r['run']:<28} {str(r['condition']):<9} {str(r['seed']):>4}  {','.join(r['stages']):<38}{vals}")
    return 0
