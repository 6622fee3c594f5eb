"""Measure semantic collapse in a run: attention sinks, embedding geometry, decodability,
knowledge and retrieval (``--list`` names every metric), from RUN/capture, RUN/checkpoint and RUN/metrics.json.

Writes RUN/analysis.json atomically (checkpoints.md): run metadata, tidy per layer / head records,
one headline number per metric with its direction, decoded samples, and with --all-checkpoints a
trajectory over RUN/checkpoints/step-*/. Metrics a run cannot have (the reconstruction path of an
untouched model) are listed as absent. Needs a capture first: `karma-probe capture RUN`.
"""

EXAMPLES = """examples:
  karma-probe analyze runs/tiny-karma-s0                            # every metric
  karma-probe analyze runs/tiny-karma-s0 --metrics sink_mass,erank  # only these (others in analysis.json are kept)
  karma-probe analyze runs/tiny-karma-s0 --all-checkpoints          # + trajectory over checkpoints/step-*/
  karma-probe analyze runs/tiny-base                                # untouched reference run (no recon_* metrics)
  karma-probe analyze runs/my-model --device auto --dtype bfloat16   # your own model (capture --model DIR) on a GPU
  karma-probe analyze --list                                        # metric names, directions, families
"""


def add_arguments(p):
    p.add_argument("run", nargs="?", help="run directory (holds config.json, checkpoint/, capture/)")
    p.add_argument("--metrics", help="comma-separated metric names (default: all; see --list)")
    p.add_argument("--all-checkpoints", action="store_true",
                   help="also analyze RUN/checkpoints/step-*/ into a trajectory (each checkpoint captured in memory "
                        "on 32 history / 8 text probes unless it holds its own capture/)")
    p.add_argument("--threads", type=int, help="torch threads (default: the idle cores, by the 1-minute load average)")
    p.add_argument("--list", action="store_true", help="list the registered metrics and exit")
    from karma_probe.core.device import add_arguments as device_arguments

    device_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    import sys

    from karma_probe.core.errors import BadInput

    if args.list:
        from karma_probe.analyzers import select

        for m in select(None):
            first = m.doc.split("\n")[0]
            print(f"{m.name:29s} {'higher' if m.higher_is_better else 'lower ':6s} {m.family:13s} {first}")
        return 0
    if not args.run:
        raise BadInput("give a RUN directory (or --list)")
    from karma_probe.analyzers.run import analyze_run

    if args.threads is not None and args.threads < 1:
        raise BadInput(f"--threads must be >= 1, got {args.threads}")
    from karma_probe.rundir.lock import claim_run

    with claim_run(args.run, "analyze"):  # one writer per run: not while train or capture rewrite it
        out = analyze_run(args.run, metrics=args.metrics, all_checkpoints=args.all_checkpoints,
                          progress=not args.no_progress and sys.stderr.isatty(), threads=args.threads,
                          device=args.device, dtype=args.dtype)
    hib, intervals = out["higher_is_better"], out.get("intervals", {})
    for name, value in out["summary"].items():
        shown = "n/a" if value is None else f"{value:.4g}"
        ci = f"[{intervals[name][0]:.4g}, {intervals[name][1]:.4g}]" if name in intervals else ""
        print(f"{name:29s} {shown:>10s} {ci:>22s}  ({'higher' if hib.get(name) else 'lower'} is better)")
    for name, reason in out["absent"].items():
        print(f"{name:29s} {'absent':>10s}  ({reason})")
    print(f"wrote {args.run.rstrip('/')}/analysis.json")
    return 0
