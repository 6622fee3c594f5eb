"""Step time of each condition relative to action-only, and interest-embedding inference cost.

Targets (issue 3): a KARMA step costs at most 1.5x an action-only step; computing the interest
embedding at inference costs the same in both conditions (the regularizers are train-only).

    python benchmarks/train_step.py --preset tiny --steps 10
    python benchmarks/train_step.py --preset smollm2 --steps 4
    python benchmarks/train_step.py --preset smollm2 --steps 4 --set train_layers=0   # full fine-tuning
    python benchmarks/train_step.py --preset smollm2 --steps 3 --conditions action --precisions fp32 bf16

Conditions are interleaved step by step so that background load hits all of them alike; the
printed numbers are medians over the measured steps (after one warm-up step each).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from karma_probe.core.config import make_config, parse_sets
from karma_probe.data.dataset import load_dataset
from karma_probe.model.retriever import build_model
from karma_probe.train.batches import make_batches
from karma_probe.train.loop import _freeze, _optimizer
from karma_probe.train.objectives import KarmaObjective


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=["tiny", "smollm2", "smollm2-full"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--conditions", nargs="+", default=["action", "gen", "rec", "karma"])
    ap.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"],
                    help="compare autocast precisions too (default: the preset's)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a preset field (repeatable)")
    args = ap.parse_args()
    overrides = parse_sets(args.set)

    setups = {}
    precisions = args.precisions or [None]
    for cond, precision in [(c, p) for c in args.conditions for p in precisions]:
        cfg = make_config(args.preset, cond, overrides | ({"precision": precision} if precision else {}))
        cond = f"{cond}/{precision}" if precision else cond
        ds = load_dataset(cfg.dataset)
        model = build_model(cfg, dataset=ds)
        _freeze(model, cfg)
        objective = KarmaObjective(model, cfg.lambda_gen, cfg.lambda_rec, full_softmax=cfg.act_loss == "softmax")
        setups[cond] = (cfg, model, objective, _optimizer(model, cfg), make_batches(cfg, ds, ds.split().train, model.tokenizer))
    times = {c: [] for c in setups}
    for step in range(args.steps + 1):
        for cond, (cfg, model, obj, opt, batches) in setups.items():
            batch = batches(step)  # same seed and step: the same users and targets in every condition
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                out = obj(batch)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            if step:  # the first step warms up allocators and kernels
                times[cond].append(time.perf_counter() - t)

    # Inference: the interest embedding of the same prompts, with each condition's model.
    cfg0, _, _, _, b0 = next(iter(setups.values()))
    histories = [e.history for e in b0.examples[:64]]
    infer = {c: [] for c in setups}
    for _ in range(3):
        for cond, (cfg, model, *_rest) in setups.items():
            model.eval()
            t = time.perf_counter()
            model.interest_for(histories, cfg.max_history, batch_size=16, items=ds.items)
            infer[cond].append(time.perf_counter() - t)

    first = next(iter(setups))  # action (in the first listed precision) is the reference
    base = statistics.median(times[first]) if first.startswith("action") else None
    base_inf = statistics.median(infer[first]) if first.startswith("action") else None
    print(f"preset={args.preset} interface={cfg0.interface} precision={cfg0.precision} steps={args.steps} "
          f"batch={cfg0.batch_size} train_layers={cfg0.train_layers or 'all'} reg_positions={cfg0.reg_positions} "
          f"threads={torch.get_num_threads()}" + (f" overrides={overrides}" if overrides else ""))
    print(f"{'condition':<12} {'step s':>9} {'x action':>9} {'infer s':>9} {'x action':>9}")
    for cond in setups:
        st, inf = statistics.median(times[cond]), statistics.median(infer[cond])
        print(f"{cond:<12} {st:>9.3f} {st / base if base else float('nan'):>9.2f} "
              f"{inf:>9.3f} {inf / base_inf if base_inf else float('nan'):>9.2f}")


if __name__ == "__main__":
    main()
