"""Train one condition (action | gen | rec | karma) on a preset and write a run directory.

Run the same command again after an interruption: it resumes from the last checkpoint.
Data-parallel on several CPU processes or GPUs: ``torchrun --standalone --nproc_per_node N -m
karma_probe train ...`` (karma_probe/train/distributed.py).
"""

EXAMPLES = """examples:
  karma-probe train --preset tiny --condition action --out runs/tiny-action-s0
  karma-probe train --preset tiny --condition karma --out runs/tiny-karma-s1 --seed 1
  karma-probe train --preset smollm2 --condition karma --out runs/smollm2-karma-s0 --steps 400
  karma-probe train --preset tiny --condition gen --out runs/x --set lr=1e-3 --set sampled_negatives=32
  torchrun --standalone --nproc_per_node 2 -m karma_probe train --preset tiny --condition action --out runs/x --threads 1
"""


def add_arguments(p):
    from karma_probe.core.config import CONDITIONS, PRESETS

    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="tiny (random-init, seconds), smollm2 (real model, top 8 layers) "
                                                                          "or smollm2-full (every decoder layer)")
    p.add_argument("--condition", required=True, choices=list(CONDITIONS), help="which λs are on")
    p.add_argument("--out", required=True, help="run directory, e.g. runs/NAME")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", help="ml-100k (default), synthetic[:SEED], or a directory of atomic files")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any TrainConfig field (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing run directory at --out first (refused for anything that is not a run)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the idle cores; threads waiting "
                   "for a busy core spin, so a loaded machine trains faster with fewer)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import json
    from pathlib import Path

    from karma_probe.core.config import make_config, parse_sets

    from karma_probe.core.errors import BadInput

    if args.threads is not None and args.threads < 1:
        raise BadInput(f"--threads must be >= 1, got {args.threads}")
    fields = {"seed": args.seed}
    if args.steps is not None:
        fields["steps"] = args.steps
    if args.dataset:
        fields["dataset"] = args.dataset
    cfg = make_config(args.preset, args.condition, parse_sets(args.set), **fields)
    from karma_probe.train.loop import train_run

    if args.no_progress:  # transformers' own saving bars too, so stderr holds only what matters
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    from contextlib import nullcontext

    from karma_probe.rundir.lock import claim_run, writer_rank

    # one writer per run (rundir.lock); under a distributed launcher only rank 0 writes the run
    with claim_run(args.out, "train", new=True) if writer_rank() == 0 else nullcontext():
        metrics = train_run(cfg, Path(args.out), preset=args.preset, overwrite=args.overwrite,
                            progress=not args.no_progress, threads=args.threads)
    if metrics:
        print(json.dumps({"run": args.out, "test": metrics["test"], "random": metrics["random"]}, indent=2))
    return 0
