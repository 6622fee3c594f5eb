"""List the runs under a runs directory: condition, seed, which stages exist, headline metrics.

A run is a directory with a ``config.json``; its files are read through :mod:`karma_probe.rundir`
(the stages are ``rundir.STAGES``), and a run whose files do not parse is listed as BROKEN with
the reason instead of ending the listing. The ``chain`` column says whether the analysis still
derives from the run's capture and checkpoint (karma_probe.rundir.chain): ok, unverified (written
before fingerprints), STALE (re-captured or re-trained since) or BROKEN (a capture file missing or
truncated); each run that is not ok gets a line below the table saying why and what to re-run.
A run that a train, capture, analyze or reproduce is writing right now is marked "(busy)", with a
line naming that process (rundir.lock.busy: read without taking the lock). A run whose training has
not finished shows how far it got ("step 270/500", the last step in train_log.jsonl of the steps in
its config), so a study of many hours can be followed from one listing.
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
    from karma_probe.core.errors import BadInput
    from karma_probe.rundir import RunPaths, read_analysis, read_config, read_train_log
    from karma_probe.rundir.chain import chain_status
    from karma_probe.rundir.lock import busy

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
            analysis = read_analysis(d) if paths.analysis.is_file() else None
        except BadInput as e:
            rows.append({"run": d.name, "error": str(e)})
            continue
        summary = analysis.summary if analysis else {}
        stages, progress = paths.stages(), None
        if "checkpoint" not in stages:  # still training (or stopped): how far it got
            try:
                logged = read_train_log(d)
            except BadInput:
                logged = ()
            steps = (meta.get("train") or {}).get("steps")
            if logged:
                progress = f"step {logged[-1]['step']}/{steps if steps is not None else '?'}"
        chain = chain_status(d, analysis.derived_from if analysis else None)
        rows.append({"run": d.name, "condition": meta.get("condition"), "seed": meta.get("seed"),
                     "stages": stages, "progress": progress, "busy": busy(d), "chain": chain.state,
                     "chain_reason": chain.reason,
                     **{m: _json_value(summary.get(m)) for m in shown}})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs under {root}")
        return 0
    head = (f"{'run':<28} {'condition':<9} {'seed':>4}  {'stages':<38}{'chain':<11}"
            + "".join(f"{m:>18}" for m in shown))
    print(head)
    for r in rows:
        if "error" in r:
            print(f"{r['run']:<28} BROKEN: {r['error']}")
            continue
        chain = r["chain"].upper() if r["chain"] in ("stale", "broken") else r["chain"]
        vals = "".join(f"{format_value(r[m]):>18}" if isinstance(r[m], (int, float)) else f"{'-':>18}" for m in shown)
        done = ",".join(r["stages"] + ([r["progress"]] if r["progress"] else []))
        stages = (done + (" (busy)" if r["busy"] else "")).strip()
        print(f"{r['run']:<28} {str(r['condition']):<9} {str(r['seed']):>4}  {stages:<38}{chain:<11}{vals}")
    for r in rows:
        if r.get("busy"):
            print(f"{r['run']}: busy, being written by {r['busy']}")
    for r in rows:
        if r.get("chain") in ("stale", "broken"):
            print(f"{r['run']}: {r['chain'].upper()}: {r['chain_reason']}")
    unverified = [r["run"] for r in rows if r.get("chain") == "unverified"]
    if unverified:
        print(f"unverified ({', '.join(unverified)}): written before runs recorded what each result was derived "
              "from; re-run `karma-probe capture` and `analyze` to verify")
    return 0


def _json_value(v):
    """A summary value as ls prints it: None where analysis.json holds null (parsed as NaN)."""
    return None if v is None or v != v else v
