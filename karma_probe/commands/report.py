"""Write a PDF diagnostic report for one or more runs: a verdict table (each headline metric,
its change against the first run, better / worse by the metric's direction), a section per
metric family with figures, and an appendix with each run's config and provenance.

The first run is the reference. Sections whose data are missing (e.g. a run without captures)
print a short "not available" note. Needs only the run dirs (analysis.json at least), not torch.
"""

from __future__ import annotations

EXAMPLES = """examples:
  karma-probe report runs/tiny-action-s0 runs/tiny-karma-s0 -o reports/tiny.pdf
  karma-probe report runs/smollm2-base runs/smollm2-action-s0 runs/smollm2-karma-s0 -o smollm2.pdf --probes 2 --samples 10
  karma-probe report runs/smollm2-action-s0 runs/smollm2-karma-s0 -o l27h3.pdf --layer 27 --head 3
"""


def add_arguments(p):
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories; the first is the reference for deltas")
    p.add_argument("-o", "--out", required=True, metavar="FILE.pdf", help="where to write the PDF (atomically)")
    p.add_argument("--probes", type=int, default=2, help="attention maps of this many captured probes per run (default 2)")
    p.add_argument("--samples", type=int, default=6, help="decoded samples shown per run (default 6)")
    p.add_argument("--layer", type=int, help="layer of the attention maps (default: the first run's strongest sink head)")
    p.add_argument("--head", type=int, help="head of the attention maps (default: as --layer)")


def run(args) -> int:
    import sys

    from karma_probe.core.errors import BadInput
    from karma_probe.report.pdf import write_report
    from karma_probe.report.results import distinct, load_run
    from karma_probe.rundir import check_writable

    if args.probes < 1 or args.samples < 0:
        raise BadInput("--probes must be >= 1 and --samples >= 0")
    check_writable(args.out)  # before the pages are drawn, not after
    runs = distinct([load_run(r) for r in args.runs])  # every run is validated before a page is drawn
    for r in runs:  # a STALE or BROKEN run is reported, marked on its own first page: say so here too
        if not r.chain.trusted:
            print(f"karma-probe report: warning: {r.path}: {r.chain}", file=sys.stderr)
    written = write_report(runs, args.out, probes=args.probes, samples=args.samples, layer=args.layer, head=args.head)
    print(f"wrote {written.path} ({len(written.pages)} pages)")
    return 0
