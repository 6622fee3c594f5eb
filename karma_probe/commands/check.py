"""Gate a run on its metrics: against a baseline file (tolerances, directions) and/or against
another run (relational claims). Prints a table; exit 0 pass, 1 regression, 2 bad input.

The baseline format is documented in karma_probe/report/check.py. JUnit XML (--junit) has one testcase
per checked claim, for CI test reporters; --json writes the same results for scripts.
``--update-baseline`` with several runs (seeds of one condition) derives each metric's tolerance
from their spread: max(k * std, 0.001, 0.01 * |mean|), k = --noise-k (3).
"""

from __future__ import annotations

from pathlib import Path

from karma_probe.core.errors import BadInput, CheckFailed
from karma_probe.report import check
from karma_probe.report.results import Run, distinct, load_run
from karma_probe.rundir import check_writable

EXAMPLES = """examples:
  karma-probe check runs/tiny-karma-s0 --baseline reports/baselines/tiny.json
  karma-probe check runs/tiny-karma-s0 --baseline reports/baselines/tiny.json --junit reports/check.xml --json reports/check.json
  karma-probe check runs/tiny-karma-s0 --against runs/tiny-action-s0 --expect "sink_mass<" --expect "hr@10>"
  karma-probe check runs/smollm2-base-b --against runs/smollm2-base-a --expect "sink_mass<=" --tolerance 1e-4
  karma-probe check runs/tiny-karma-s0 --baseline reports/baselines/tiny.json --update-baseline
  karma-probe check runs/tiny-karma-s0 runs/tiny-karma-s1 runs/tiny-karma-s2 --baseline reports/baselines/tiny.json --update-baseline
  karma-probe check runs/tiny-karma-s0 --baseline new.json --update-baseline --metric sink_mass --metric hr@10 --rel-tol 0.1
"""


def add_arguments(p):
    p.add_argument("run", nargs="+", help="run directory (with analysis.json); several only with --update-baseline "
                                          "(seeds of one condition: tolerances from their spread)")
    p.add_argument("--baseline", metavar="FILE", help="baseline JSON: metrics with value, direction, tolerance")
    p.add_argument("--against", metavar="OTHER_RUN", help="another run to compare with (needs --expect)")
    p.add_argument("--expect", action="append", default=[], metavar="METRIC<OP>",
                   help='relational claim vs --against, e.g. "sink_mass<" (RUN below OTHER); ops < <= > >=; repeatable')
    p.add_argument("--tolerance", type=float, metavar="X",
                   help="with --expect: values closer than X are equal within tolerance (<= and >= pass, < and > "
                        f"fail); default: float noise, max({check.REL_EPS:g} * |value|, {check.ABS_EPS:g})")
    p.add_argument("--junit", metavar="OUT.xml", help="write JUnit XML (one testcase per claim)")
    p.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--update-baseline", action="store_true",
                   help="write --baseline FILE from this run instead of checking (keeps an existing file's metrics and tolerances)")
    p.add_argument("--metric", action="append", default=[], metavar="NAME",
                   help="with --update-baseline: the metrics to put in the baseline (repeatable; default: keep / all)")
    p.add_argument("--abs-tol", type=float, metavar="X", help="with --update-baseline: absolute tolerance for every metric")
    p.add_argument("--rel-tol", type=float, metavar="X", help="with --update-baseline: relative tolerance for every metric")
    p.add_argument("--noise-k", type=float, metavar="K",
                   help=f"with --update-baseline and several runs: tolerance = K * std across them (default {check.NOISE_K:g})")


def run(args) -> int:
    if args.update_baseline:
        return _update(args)
    if args.metric or args.abs_tol is not None or args.rel_tol is not None or args.noise_k is not None:
        raise BadInput("--metric, --abs-tol, --rel-tol and --noise-k only apply with --update-baseline")
    if len(args.run) > 1:
        raise BadInput(f"check one run at a time (got {len(args.run)}); several runs only with --update-baseline")
    if not args.baseline and not args.against:
        raise BadInput("nothing to check against: give --baseline FILE and/or --against OTHER_RUN --expect ...")
    if args.tolerance is not None and not args.expect:
        raise BadInput("--tolerance applies to --against OTHER_RUN --expect ... only")
    if bool(args.against) != bool(args.expect):
        raise BadInput("--against and --expect go together: --against OTHER_RUN --expect \"sink_mass<\"")
    relations = [check.parse_expect(e) for e in args.expect]  # parse before loading anything
    for out in (args.junit, args.json):
        if out:
            check_writable(out)  # both outputs or neither: refuse before writing either
    target = _trusted(load_run(args.run[0]))
    other = _trusted(load_run(args.against)) if args.against else None
    if other is not None:
        distinct([target, other])  # a run against itself (or a copy of itself) proves nothing
    outcomes = []
    if args.baseline:
        outcomes += check.check_baseline(target, check.load_baseline(args.baseline))
    if other is not None:
        outcomes += check.check_against(target, other, relations, tolerance=args.tolerance)

    # the output files first: an unwritable --junit is exit 2 before any "PASS" is printed
    if args.junit:
        check.write_junit(args.junit, outcomes, suite=f"karma-probe check {target.name}")
    if args.json:
        check.write_json_report(args.json, outcomes, {"run": str(target.path), "baseline": args.baseline,
                                                      "against": args.against})
    print(f"karma-probe check {target.path}" + (f"  baseline: {args.baseline}" if args.baseline else "")
          + (f"  against: {args.against}" if args.against else ""))
    print(check.format_table(outcomes))
    failed = [o.name for o in outcomes if o.failed]
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(outcomes)} checks failed: {', '.join(failed)}")
    return 0


def _update(args) -> int:
    if not args.baseline:
        raise BadInput("--update-baseline needs --baseline FILE (the file to write)")
    if args.against or args.expect or args.junit or args.json or args.tolerance is not None:
        raise BadInput("--update-baseline only writes the baseline: drop --against/--expect/--tolerance/--junit/--json")
    if min(t for t in (args.abs_tol, args.rel_tol, 0.0) if t is not None) < 0:
        raise BadInput("--abs-tol and --rel-tol must be >= 0")
    check_writable(args.baseline)
    runs = distinct([_trusted(load_run(r)) for r in args.run])
    previous = check.load_baseline(args.baseline) if Path(args.baseline).exists() else None
    if len(runs) > 1:
        if args.abs_tol is not None or args.rel_tol is not None:
            raise BadInput("with several runs the tolerances come from their spread: drop --abs-tol/--rel-tol "
                           "(--noise-k scales them)")
        baseline = check.baseline_from_runs(runs, previous=previous, metrics=args.metric or None,
                                            k=args.noise_k if args.noise_k is not None else check.NOISE_K)
        check.write_baseline(args.baseline, baseline)
        print(f"wrote {args.baseline}: {len(baseline['metrics'])} metrics, mean of {len(runs)} runs, "
              f"tolerance {baseline['source']['tolerance']}")
        return 0
    if args.noise_k is not None:
        raise BadInput("--noise-k needs several runs (seeds of one condition) to measure a spread")
    target = runs[0]
    baseline = check.baseline_from_run(target, previous=previous, metrics=args.metric or None,
                                       abs_tol=args.abs_tol, rel_tol=args.rel_tol)
    check.write_baseline(args.baseline, baseline)
    print(f"wrote {args.baseline}: {len(baseline['metrics'])} metrics from {target.path}"
          + (" (metrics and tolerances kept from the previous baseline)" if previous and not args.metric else ""))
    return 0


def _trusted(run: Run) -> Run:
    """``run`` if its results derive from what it holds (rundir.chain); a STALE or BROKEN run is
    never passed (nor made a baseline): exit 2 with the reason and what to re-run."""
    if not run.chain.trusted:
        raise BadInput(f"{run.path}: {run.chain}; check passes no run whose results do not derive from what it holds")
    return run
