"""Did my fine-tune collapse compared with its base? Capture, analyze and compare your own checkpoints.

BASE_DIR and each TUNED_DIR are local causal-LM directories (save_pretrained; any architecture
transformers loads). Each is captured and analyzed into OUT/runs/<name>/ (resumable: what is done
is skipped), then OUT/summary.json and OUT/report.pdf give, for each tuned model, a verdict per
metric: tuned − base with its 95 % interval (paired bootstrap over the same probes), "differs"
(better / worse by the metric's direction) or "within noise". Intervals are raw, not corrected
for the number of metrics. Metrics that need a retriever head (reconstruction, retrieval; the
decodability probes without --dataset) are listed as absent with the reason.

Adapters: a TUNED_DIR that is a PEFT adapter directory (holds adapter_config.json) means BASE_DIR
with that adapter merged in. --adapter A1 A2 ... gives one adapter per TUNED_DIR, in order ('-' for
none), merged into that tuned model. Adapters need pip install 'karma-probe[adapter]'.

Exit codes: 0 done (whatever the verdicts; use --junit to gate CI on them), 2 bad input.
"""

EXAMPLES = """examples:
  karma-probe diagnose ~/ckpt/qwen-base ~/ckpt/qwen-tuned --probes-file my_prompts.txt -o reports/mine
  karma-probe diagnose ~/ckpt/llama-base ~/ckpt/my-lora -o reports/lora                # TUNED is a LoRA adapter on BASE
  karma-probe diagnose BASE T1 T2 --adapter - ~/ckpt/t2-lora -o reports/two          # T2 with its own adapter merged
  karma-probe diagnose BASE TUNED --probes-file p.jsonl --device auto --dtype bfloat16 -o reports/gpu --junit junit.xml
  karma-probe diagnose BASE TUNED --dataset ml-100k -o reports/ml                       # + history probes, decodability
"""


def add_arguments(p):
    from karma_probe.core.device import add_arguments as device_arguments

    p.add_argument("base", metavar="BASE_DIR", help="the model before fine-tuning (a local causal-LM directory)")
    p.add_argument("tuned", nargs="+", metavar="TUNED_DIR",
                   help="fine-tuned model directories, or PEFT adapter directories (applied to BASE_DIR)")
    p.add_argument("-o", "--out", required=True, help="output directory: runs/, summary.json, report.pdf")
    p.add_argument("--adapter", nargs="+", metavar="PEFT_DIR",
                   help="one PEFT adapter per TUNED_DIR, in order, merged into it ('-' for none)")
    p.add_argument("--probes-file", metavar="FILE",
                   help="your prompts, the headline probe set 'user': plain text, one per line, or *.jsonl with a "
                        "'text' field (blank lines skipped); without it the headline is the general passages")
    p.add_argument("--dataset", default=None,
                   help="also capture history probes of this RecBole dataset (e.g. ml-100k): enables the "
                        "decodability metrics (default: none)")
    p.add_argument("--probes", type=int, default=64, help="with --dataset: number of history probes (default 64)")
    p.add_argument("--max-len", type=int, default=256, help="tokens per probe, T (default 256)")
    p.add_argument("--batch-size", type=int, default=8, help="probes per forward pass (default 8)")
    p.add_argument("--junit", metavar="FILE",
                   help="JUnit XML: one testcase per (tuned model, metric); a metric that differs for the worse fails")
    p.add_argument("--threads", type=int, help="torch threads (default: the idle cores, by the 1-minute load average)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    device_arguments(p)


def run(args) -> int:
    import sys

    from transformers.utils import logging as hf_logging

    from karma_probe.capture.run import CaptureOptions
    from karma_probe.core.cpu import torch_threads
    from karma_probe.workflows.diagnose import diagnose, plan_models
    from karma_probe.core.errors import BadInput

    if args.threads is not None and args.threads < 1:
        raise BadInput(f"--threads must be >= 1, got {args.threads}")
    if args.dataset is None and args.probes != 64:
        raise BadInput("--probes counts history probes, which need --dataset")
    models = plan_models(args.base, args.tuned, args.adapter)
    if args.probes_file:  # a bad line is found before minutes of model loading
        from karma_probe.capture.probes import read_probes_file

        read_probes_file(args.probes_file)
    if args.junit:
        from karma_probe.rundir import check_writable

        check_writable(args.junit)
    hf_logging.disable_progress_bar()
    progress = not args.no_progress and sys.stderr.isatty()
    opts = CaptureOptions(probes=args.probes if args.dataset else 0, max_len=args.max_len, batch_size=args.batch_size,
                          progress=progress, probes_file=args.probes_file, device=args.device, dtype=args.dtype)
    with torch_threads(args.threads):
        summary = diagnose(models, args.out, opts, dataset=args.dataset, junit=args.junit, progress=progress,
                           threads=args.threads)
    for name, rows in summary["comparisons"].items():
        print(f"{name} vs {summary['base']['name']}:")
        for e in rows:
            ci = "no CI" if e["ci_low"] is None else f"[{e['ci_low']:+.4g}, {e['ci_high']:+.4g}]"
            word = e["verdict"] + (f" ({e['direction']})" if e["direction"] else "")
            print(f"  {e['metric']:22s} {e['base']:>10.4g} -> {e['tuned']:<10.4g} {e['difference']:+10.4g} "
                  f"{ci:>24s}  {word}")
    print(f"wrote {summary['report']['pdf']} and {args.out.rstrip('/')}/summary.json"
          + (f" and {args.junit}" if args.junit else ""))
    return 0
