"""List the runs under a runs directory: condition, seed, which stages exist, headline metrics.

A run is a directory with a ``config.json``; its files are read through :mod:`karma_probe.rundir`
(the stages are ``rundir.STAGES``), and a run whose files do not parse is listed as BROKEN with
the reason instead of ending the listing.
"""

EXAMPLES = """examples:
  karma-probe ls  # the runs under runs/
  karma-probe ls /data/karma-runs
  karma-probe ls --runs runs/ --json
"""


def add_arguments(p):
    p.add_argument("root", nargs="?", metavar="DIR", help="runs root (default runs/; the same as --runs DIR)")
    p.add_argument("--runs", help="runs root (default runs/)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    import json
    from pathlib import Path

    from karma_probe.analyzers.catalogue import format_value, names
    from karma_probe.errors import BadInput
    from karma_probe.rundir import RunPaths, read_analysis, read_config

    shown = names(listed=True)  # the catalogue's ls columns

    if args.root and args.runs and Path(args.root) != Path(args.runs):
        raise BadInput(f"two runs roots given ({args.root} and --runs {args.runs}); give one")
    root = Path(args.root or args.runs or "runs")
    if not root.is_dir():
        raise BadInput(f"{root}: runs directory not found")
    rows = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and RunPaths(p).config.is_file()):
        paths = RunPaths(d)
        try:
            meta = read_config(d, required=True)
            summary = read_analysis(d).summary if paths.analysis.is_file() else {}
        except BadInput as e:
            rows.append({"run": d.name, "error": str(e)})
            continue
        rows.append({"run": d.name, "condition": meta.get("condition"), "seed": meta.get("seed"),
                     "stages": paths.stages(), **{m: _json_value(summary.get(m)) for m in shown}})
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


def _json_value(v):
    """A summary value as ls prints it: None where analysis.json holds null (parsed as NaN)."""
    return None if v is None or v != v else v
