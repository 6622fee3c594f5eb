"""Can the instruments see a collapse? Plant each collapse at known doses and measure its metrics.

For each family an intervention of dose α (default 0, ¼, ½, 1, 2 of a natural scale) changes the
model or the embeddings the analyzers read — never an analyzer: the first token's key norm
(sinks), a massive-activation vector at position 0 (massive), a later key's norm (barcodes),
embeddings pulled to their mean direction
(geometry), embeddings swapped between probes (decodability), weight noise on the trained layers
(knowledge). Every metric of the family is measured on the same probes at every dose by the
analyzers `analyze` runs. α = 0 reproduces a plain capture + analyze bit for bit.

Writes OUT/calibration.json (per metric: values and intervals per dose, least-squares slope with a
bootstrap interval over probes, monotone, as planted; format: karma_probe/report/dose_response.py)
and OUT/calibration_<family>.png, atomically.
"""

EXAMPLES = """examples:
  karma-probe calibrate --model smollm2-135m --out reports/calibration-smollm2 --threads 1
  karma-probe calibrate runs/smollm2-action-s0 --out runs/calibration-action-s0
  karma-probe calibrate --model tiny --out runs/calibration-tiny --families sinks barcodes --probes 8
  karma-probe calibrate runs/tiny-karma-s0 --out runs/cal --doses 0 0.5 1 --decodability-metrics probe_genre_f1_gain
"""


def add_arguments(p):
    from karma_probe.calibration.run import DOSES, FAMILY_NAMES

    p.add_argument("run", nargs="?", help="run directory to calibrate (its checkpoint)")
    p.add_argument("--model", help="calibrate an untouched model instead (smollm2-135m, tiny, or a local HF dir), "
                                   "built as `capture --model` builds its reference run")
    p.add_argument("--out", required=True, help="calibration directory to write (calibration.json + figures)")
    p.add_argument("--dataset", default="ml-100k", help="with --model: dataset of the history probes (default ml-100k)")
    p.add_argument("--families", nargs="+", default=list(FAMILY_NAMES), choices=FAMILY_NAMES, metavar="FAMILY",
                   help=f"families to plant (default: all of {', '.join(FAMILY_NAMES)})")
    p.add_argument("--doses", nargs="+", type=float, default=list(DOSES), metavar="ALPHA",
                   help="doses, ascending, starting at 0 (default: 0 0.25 0.5 1 2)")
    p.add_argument("--probes", type=int, default=32, help="history probes (default 32)")
    p.add_argument("--text-probes", type=int, default=None, help="general passages (default: all)")
    p.add_argument("--max-len", type=int, default=256, help="tokens per probe (default 256)")
    p.add_argument("--decodability-metrics", nargs="+", metavar="METRIC",
                   help="only these *_gain metrics in the decodability family (default: all five; "
                        "probe_decode_acc* train a decoder per dose)")
    p.add_argument("--massive-layer", type=int, default=None, metavar="L",
                   help="massive: add the massive-activation vector after decoder layer L (default 0, the first)")
    p.add_argument("--threads", type=int, help="torch threads (default: the idle cores, by the 1-minute load average)")
    p.add_argument("--no-progress", action="store_true", help="no per-dose progress lines")


def run(args) -> int:
    from transformers.utils import logging as hf_logging

    from karma_probe.calibration.run import (FAMILIES, CalibrationOptions, calibrate, check_out, load_subject,
                                             write_report)
    from karma_probe.core.cpu import torch_threads
    from karma_probe.core.errors import BadInput

    if args.threads is not None and args.threads < 1:
        raise BadInput(f"--threads must be >= 1, got {args.threads}")
    if args.decodability_metrics:
        unknown = [m for m in args.decodability_metrics if m not in FAMILIES["decodability"][0]]
        if unknown:
            raise BadInput(f"--decodability-metrics: unknown {', '.join(unknown)}; known: "
                           f"{', '.join(FAMILIES['decodability'][0])}")
    opts = CalibrationOptions(families=tuple(dict.fromkeys(args.families)), doses=tuple(args.doses), probes=args.probes,
                              text_probes=args.text_probes, max_len=args.max_len, progress=not args.no_progress,
                              decodability_metrics=tuple(args.decodability_metrics) if args.decodability_metrics else None,
                              massive_layer=args.massive_layer)
    opts.check()
    out = check_out(args.out)
    hf_logging.disable_progress_bar()
    with torch_threads(args.threads):
        subject = load_subject(args.run, args.model, args.dataset)
        result = calibrate(subject, opts)
    path = write_report(result, out)
    for family, block in result["families"].items():
        for metric, r in block["metrics"].items():
            ci = f"[{r['slope_ci'][0]:.4g}, {r['slope_ci'][1]:.4g}]" if r["slope_ci"] else "(no interval)"
            print(f"{family:13s} {metric:26s} slope {r['slope']:+.4g} {ci:24s} expected {r['expected']:4s} "
                  f"{'as planted' if r['as_planted'] else 'NOT as planted'}{'' if r['monotone'] else ', not monotone'}")
        for metric, reason in block["absent"].items():
            print(f"{family:13s} {metric:26s} absent ({reason})")
    print(f"wrote {path}")
    return 0
