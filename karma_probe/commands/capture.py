"""Capture attention and hidden-state statistics of a run on a fixed, seeded probe set.

Attention statistics (first-token mass, received mass per key position, normalized row entropy,
top-5% key concentration) are computed exactly from each layer's own queries, keys and mask, one
chunk of queries at a time, inside transformers' attention interface (any architecture that
dispatches attention through it; --backend tl for the others); residual-stream massive-
activation ratios, the hidden state at the interest marker for every layer, interest and item
embeddings and K full attention maps are kept too. Output: RUN/capture/ (see checkpoints.md).

Your own model: --model DIR (any local causal-LM directory) makes a run of condition 'model';
--adapter merges a PEFT adapter into it; --probes-file adds your prompts as the probe set 'user';
--dataset none leaves out the history probes (then the headline is your prompts). To compare a
fine-tune with its base in one go, see `karma-probe diagnose`.
"""

from karma_probe.capture.probes import DEFAULT_TEXT_PROBES

EXAMPLES = """examples:
  karma-probe capture runs/tiny-karma-s0                            # 64 history probes + the first 32 general passages
  karma-probe capture runs/tiny-karma-s0 --probes 128 --max-len 512 --full-maps 8
  karma-probe capture runs/tiny-karma-s0 --backend tl               # TransformerLens run_with_cache (eager, more memory)
  karma-probe capture --model smollm2-135m --out runs/smollm2-base  # reference run of the untouched model
  karma-probe capture --model ~/ckpt/my-qwen --probes-file my_prompts.txt --dataset none --out runs/my-qwen
  karma-probe capture --model ~/ckpt/qwen-base --adapter ~/ckpt/my-lora --device auto --dtype bfloat16 --out runs/my-lora
  karma-probe capture runs/smollm2-karma-s0 --shard 0/2 --capture-dir runs/smollm2-karma-s0/capture-0
  karma-probe capture --merge runs/smollm2-karma-s0/capture runs/smollm2-karma-s0/capture-0 runs/smollm2-karma-s0/capture-1
"""


def add_arguments(p):
    p.add_argument("run", nargs="?", help="run directory (holds config.json and checkpoint/)")
    p.add_argument("--model", help="capture a model as loaded into a new run: the untouched reference (smollm2-135m, "
                                   "tiny) or your own model (any local causal-LM directory: condition 'model')")
    p.add_argument("--adapter", metavar="PEFT_DIR",
                   help="with --model: a PEFT adapter (e.g. LoRA) merged into the model for the capture "
                        "(needs pip install 'karma-probe[adapter]')")
    p.add_argument("--out", help="with --model: the run directory to create (e.g. runs/tiny-base)")
    p.add_argument("--dataset", default="ml-100k",
                   help="with --model: dataset for the history probes (default ml-100k; 'none': no history probes, "
                        "only the general passages and --probes-file)")
    p.add_argument("--probes-file", metavar="FILE",
                   help="your own prompts as a third probe set 'user': plain text, one prompt per line, or *.jsonl "
                        "with a 'text' field per line (blank lines skipped); tokenized with the model's tokenizer defaults")
    p.add_argument("--max-items", type=int, default=None,
                   help="with --model: history items per probe (default: the max_history of the preset that "
                        "trains this backbone, whose interface it also takes, so the reference sees the "
                        "trained runs' inputs)")
    p.add_argument("--probes", type=int, default=64, help="number of history probes (test-split users; default 64)")
    p.add_argument("--text-probes", type=int, default=DEFAULT_TEXT_PROBES,
                   help=f"capture the first N general-text passages of resources/passages.txt (default {DEFAULT_TEXT_PROBES}; "
                        "lm_ppl reads all of them whatever N is)")
    p.add_argument("--max-len", type=int, default=256, help="tokens per probe, T (default 256)")
    p.add_argument("--full-maps", type=int, default=4, help="keep full attention maps of the first K history probes (default 4)")
    p.add_argument("--backend", choices=["torch", "tl"], default="torch", help="torch: transformers' attention interface (default; exact, streamed) or tl: TransformerLens "
                        "run_with_cache (eager, T x T maps in memory; for architectures outside the interface)")
    p.add_argument("--batch-size", type=int, default=8, help="probes per forward pass (default 8)")
    p.add_argument("--chunk-size", type=int, default=256, help="query rows per attention chunk (default 256)")
    p.add_argument("--seed", type=int, default=0, help="probe-set seed (default 0; keep it fixed to compare runs)")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="capture only contiguous shard I of N of the probe set")
    p.add_argument("--capture-dir", help="where to write (default RUN/capture)")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="OUT IN1 IN2 ...: merge captures of disjoint shards into OUT (no model is loaded)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from karma_probe.core.device import add_arguments as device_arguments

    device_arguments(p)


def _shard(text: str) -> tuple[int, int]:
    from karma_probe.core.errors import BadInput

    i, sep, n = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return int(i), int(n)
    except ValueError:
        raise BadInput(f"--shard {text!r}: expected I/N, e.g. 0/2") from None


def run(args) -> int:
    from karma_probe.core.errors import BadInput
    from karma_probe.rundir.lock import claim_run

    if args.merge:
        if args.run or args.model:
            raise BadInput("--merge takes OUT IN1 IN2 ... and no RUN or --model")
        if len(args.merge) < 3:
            raise BadInput("--merge needs OUT and at least two input captures")
        from karma_probe.capture.writer import merge_captures
        from karma_probe.rundir.capture import check_target, read_capture, write_capture

        out, *inputs = args.merge
        check_target(out)
        with claim_run(_owner(out), "capture", new=True):
            merged = merge_captures([read_capture(p) for p in inputs])
            print(write_capture(out, merged))
        return 0

    from transformers.utils import logging as hf_logging

    from karma_probe.capture.run import CaptureOptions, capture_run, create_base_run

    # transformers' own loading/saving bars would sit above a one-line error; ours counts batches.
    hf_logging.disable_progress_bar()

    opts = CaptureOptions(probes=args.probes, text_probes=args.text_probes, max_len=args.max_len,
                          full_maps=args.full_maps, backend=args.backend, batch_size=args.batch_size,
                          chunk_size=args.chunk_size, seed=args.seed, shard=_shard(args.shard),
                          progress=not args.no_progress, probes_file=args.probes_file, device=args.device,
                          dtype=args.dtype)
    if args.probes_file:  # a bad line is found before minutes of model loading
        from karma_probe.capture.probes import read_probes_file

        read_probes_file(args.probes_file)
    if args.adapter and not args.model:
        raise BadInput("--adapter applies to --model DIR (a run directory's checkpoint is captured as trained)")
    if args.full_maps < 0:
        raise BadInput(f"--full-maps must be >= 0, got {args.full_maps}")
    if args.model:
        if args.run or not args.out:
            raise BadInput("--model needs --out RUN_DIR (and no positional RUN)")
        if args.capture_dir:
            raise BadInput("--capture-dir does not apply to --model (the capture goes to OUT/capture)")
        from karma_probe.capture.probes import DEFAULT_MAX_ITEMS
        from karma_probe.core.config import reference_config

        cfg = reference_config(args.model)
        max_items = args.max_items if args.max_items is not None else cfg.max_history if cfg else DEFAULT_MAX_ITEMS
        if max_items < 1:
            raise BadInput(f"--max-items must be >= 1, got {max_items}")
        dataset = None if args.dataset == "none" or args.probes == 0 else args.dataset
        with claim_run(args.out, "capture", new=True):
            print(create_base_run(args.model, args.out, opts, dataset=dataset, max_items=max_items, cfg=cfg,
                                  adapter=args.adapter))
        return 0
    if not args.run:
        raise BadInput("give a RUN directory, or --model M --out DIR, or --merge OUT IN1 IN2 ...")
    if args.capture_dir:
        from karma_probe.rundir.capture import check_target

        check_target(args.capture_dir)  # before minutes of capture, not after
    with claim_run(_owner(args.capture_dir) if args.capture_dir else args.run, "capture", new=bool(args.capture_dir)):
        print(capture_run(args.run, opts, out=args.capture_dir))
    return 0


def _owner(capture: str):
    """What a capture written to ``capture`` claims (rundir.lock): the run when it is a run's
    ``capture/``, else the capture directory itself (a shard captured beside the others)."""
    from pathlib import Path

    from karma_probe.rundir import CAPTURE, CONFIG

    path = Path(capture)
    return path.parent if path.name == CAPTURE and (path.parent / CONFIG).is_file() else path
