"""Per-loss gradient norms at step 0 on the shared parameters, and what the balanced form does.

At λ = 1 the v2 study's regularizers had gradient norms on the trained layers many times the
action loss's, so Adam's shared second moment shrank the action loss's effective step. This
measures, on the step-0 model with the real cached content vectors, over a few training batches:
‖g_act‖, ‖g_gen‖, ‖g_rec‖ on the shared parameters (train._shared_parameters), their ratios to
‖g_act‖ and their cosines, and the balanced weight min(λ, ρ·‖g_act‖/‖g_reg‖) each would get.

    python benchmarks/grad_balance.py --preset smollm2 --batches 3
    python benchmarks/grad_balance.py --preset smollm2-full --batches 3 --rho 0.25
    python benchmarks/grad_balance.py --preset tiny --batches 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from karma_probe.core.config import PRESETS, make_config
from karma_probe.core.cpu import torch_threads
from karma_probe.data.dataset import load_dataset
from karma_probe.model.retriever import build_model
from karma_probe.train.batches import make_batches
from karma_probe.train.loop import _freeze, _shared_parameters
from karma_probe.train.objectives import KarmaObjective, balanced_weights, gradient_stats, loss_gradients


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--reg-weight", type=float, default=1.0, help="λ of both regularizers (default 1)")
    ap.add_argument("--rho", type=float, default=0.25, help="ρ of the balanced form (default 0.25)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with torch_threads(args.threads):
        cfg = make_config(args.preset, "karma", reg_weight=args.reg_weight)
        ds = load_dataset(cfg.dataset)
        model = build_model(cfg, dataset=ds)
        _freeze(model, cfg)
        objective = KarmaObjective(model, cfg.lambda_gen, cfg.lambda_rec, full_softmax=cfg.act_loss == "softmax")
        batches = make_batches(cfg, ds, ds.split().train, model.tokenizer)
        shared = _shared_parameters(model)
        n_shared = sum(p.numel() for p in shared)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
        rows = []
        for step in range(args.batches):
            t0 = time.perf_counter()
            with autocast:
                terms = objective(batches(step))
            stats = gradient_stats(loss_gradients(terms, shared))
            stats |= {f"w_{k}": w for k, w in balanced_weights(
                stats, {"gen": cfg.lambda_gen, "rec": cfg.lambda_rec}, args.rho).items()}
            stats["seconds"] = time.perf_counter() - t0
            rows.append(stats)
    print(f"preset {args.preset}: {n_shared / 1e6:.1f} M shared parameters (train_layers={cfg.train_layers}, "
          f"freeze_embeddings={cfg.freeze_embeddings}), λ = {args.reg_weight}, ρ = {args.rho}, "
          f"{args.batches} batches of {cfg.batch_size}, step 0")
    print("| batch | ‖g_act‖ | ‖g_gen‖/‖g_act‖ | ‖g_rec‖/‖g_act‖ | cos(act,gen) | cos(act,rec) | w_gen | w_rec | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(f"| {i} | {r['gn_act']:.4f} | {r['gn_gen'] / r['gn_act']:.2f} | {r['gn_rec'] / r['gn_act']:.2f} | "
              f"{r['cos_act_gen']:+.3f} | {r['cos_act_rec']:+.3f} | {r['w_gen']:.3f} | {r['w_rec']:.3f} | "
              f"{r['seconds']:.1f} |")
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    print(f"median ratio gen {statistics.median(r['gn_gen'] / r['gn_act'] for r in rows):.2f}, "
          f"rec {statistics.median(r['gn_rec'] / r['gn_act'] for r in rows):.2f}; median w_gen {med('w_gen'):.3f}, "
          f"w_rec {med('w_rec'):.3f}")


if __name__ == "__main__":
    main()
