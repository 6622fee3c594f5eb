"""The compact trainer: action-only, gen, rec or KARMA on one code path, resumable, via Accelerate.

``train_run(cfg, out)`` writes the run directory of checkpoints.md. Checkpoints (backbone as HF
safetensors + heads) are written every ``checkpoint_every`` steps together with the optimizer
state, so a killed run started again with the same command resumes from its last checkpoint and
ends with the same weights as an uninterrupted one (batches are a function of seed and step, and
the learning rate a function of step).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from karma_probe.core.config import TrainConfig
from karma_probe.core.errors import BadInput, Diverged
from karma_probe.data.dataset import load_dataset
from karma_probe.model.retriever import HEADS_FILE, build_model
from karma_probe.rundir import (CHECKPOINT, CHECKPOINTS, CONFIG, METRICS, RESUME, STATE, TRAIN_LOG, append_jsonl,
                                atomic_dir, check_writable, checkpoint_state, config_hash, git_sha, load_tensors, now,
                                read_json, read_jsonl, save_tensors, step_dir, versions, write_json)
from karma_probe.train.batches import make_batches
from karma_probe.train.evaluate import baselines, evaluate_model
from karma_probe.train.objectives import KarmaObjective, balanced_weights, gradient_stats, loss_gradients


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to 10% (a pure function of the step, for exact resume)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _freeze(model, cfg: TrainConfig) -> None:
    bb = model.backbone
    if cfg.train_layers > 0:
        bb.requires_grad_(False)
        for layer in bb.model.layers[-cfg.train_layers:]:
            layer.requires_grad_(True)
        bb.model.norm.requires_grad_(True)
    if cfg.freeze_embeddings:
        bb.get_input_embeddings().requires_grad_(False)  # tied to the LM head: both stay as loaded
    # An unused module would only make DDP complain; its weights stay at their initialization.
    model.rec_adapter.requires_grad_(cfg.lambda_rec > 0)


def _optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    body = [p for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    return torch.optim.AdamW([{"params": body, "lr": cfg.lr, "base_lr": cfg.lr},
                              {"params": heads, "lr": cfg.head_lr, "base_lr": cfg.head_lr}],
                             weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------------- optimizer state as safetensors


def _opt_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {f"{pid}.{k}": v for pid, st in sd["state"].items() for k, v in st.items()}
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups}


def _load_opt(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        pid, _, name = key.partition(".")
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# ---------------------------------------------------------------------- the run directory


def _prepare_dir(cfg: TrainConfig, out: Path, name: str, preset: str, overwrite: bool, world_size: int = 1) -> dict:
    """Create, check or resume the run directory (the main process only: distributed.on_main)."""
    meta = {"name": name, "condition": cfg.condition, "preset": preset, "seed": cfg.seed, "train": cfg.to_dict(),
            "config_hash": config_hash(cfg.to_dict())} | _world_meta(cfg, world_size)
    check_writable(out, directory=True)  # a regular file, a read-only or missing place: refused up front
    if out.exists() and overwrite:
        if any(out.iterdir()) and not _is_run(out):
            raise BadInput(f"{out} is not a karma_probe run directory (no run config.json); "
                           "--overwrite only replaces runs, choose another --out")
        if _backup(out).exists():  # left by a killed --overwrite
            shutil.rmtree(_backup(out))
        out.rename(_backup(out))  # kept until the new run has a checkpoint (train_run)
    if (out / CONFIG).is_file() and _started(out):
        old = read_json(out / CONFIG, "run config")
        if old.get("config_hash") != meta["config_hash"]:
            diff = {k: (old.get("train", {}).get(k), v) for k, v in cfg.to_dict().items() if old.get("train", {}).get(k) != v}
            raise BadInput(f"{out} holds a run with another config (differs in {diff}); "
                           "choose another --out or pass --overwrite")
        _check_same_world(old, world_size, out)
        return old
    if out.exists() and any(p.name != CONFIG for p in out.iterdir()):
        raise BadInput(f"{out} exists and is not a karma_probe run directory; choose another --out")
    # empty, absent, or a config.json alone (a start that never trained a step, from an older version)
    meta |= {"git_sha": git_sha(), "versions": versions(), "created": now()}
    write_json(out / CONFIG, meta)
    return meta


def _world_meta(cfg: TrainConfig, world_size: int) -> dict:
    """config.json's record of the process group: each of ``world_size`` processes draws its own
    ``batch_size`` examples a step and their gradients are averaged, so a step sees
    ``batch_size × world_size`` examples."""
    return {"world_size": world_size, "effective_batch_size": cfg.batch_size * world_size}


def _check_same_world(old: dict, world_size: int, out: Path) -> None:
    """A resume continues the batches of the same number of processes (batches depend on the rank)."""
    was = old.get("world_size", 1)  # runs from before world_size was recorded were single-process
    if was != world_size:
        raise BadInput(f"{out} was trained by {was} process(es), this start has {world_size}: resume it with "
                       f"{was}, or choose another --out or pass --overwrite")


def _backup(out: Path) -> Path:
    """Where --overwrite keeps the old run until the new one has its first checkpoint."""
    return out.with_name(f".{out.name}.overwritten")


def _is_run(out: Path) -> bool:
    try:
        meta = read_json(out / CONFIG, "run config")
    except BadInput:
        return False
    return isinstance(meta, dict) and "config_hash" in meta and "train" in meta


def _started(out: Path) -> bool:
    """Has anything but config.json been written (a log line, a checkpoint, metrics)?"""
    return any(p.name != CONFIG for p in out.iterdir())


def _first_missing(out: Path) -> Path | None:
    """The outermost directory that creating ``out`` will create (None if ``out`` exists)."""
    missing = None
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            break
        missing = p
    return missing


def _undo_unstarted(out: Path, created: Path | None) -> None:
    """A new run that fails before its first checkpoint leaves nothing behind: no config-only husk
    that ``ls`` would list and that would block the corrected command. A checkpointed run stays
    (started again, it resumes)."""
    if (out / RESUME / STATE).is_file():
        return
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
    elif out.is_dir():  # it was there, empty, before: empty it again
        for p in out.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _elapsed_before(out: Path, start: int) -> float:
    """Training seconds logged before a resume at ``start``, so elapsed_s keeps counting."""
    rows = [r for r in read_jsonl(out / TRAIN_LOG) if r.get("step", 0) <= start and "elapsed_s" in r]
    return float(rows[-1]["elapsed_s"]) if start and rows else 0.0


def _checkpoint_state(cfg: TrainConfig, step: int, meta: dict) -> dict:
    """A checkpoint's state.json: its step, and the TrainConfig that made it (so it loads on its own)."""
    return checkpoint_state(step, cfg.condition, meta["config_hash"], cfg.to_dict())


def _save_checkpoint(model, opt, cfg: TrainConfig, out: Path, step: int, meta: dict) -> Path:
    state = _checkpoint_state(cfg, step, meta)
    ckpt = out / CHECKPOINTS / step_dir(step)
    with atomic_dir(ckpt) as tmp:
        model.save(tmp, state)
    state = {k: v for k, v in state.items() if k != "train"}  # resume/ reads the run's config.json
    tensors, opt_meta = _opt_tensors(opt)
    with atomic_dir(out / RESUME) as tmp:
        save_tensors(tmp / "optimizer.safetensors", tensors)
        write_json(tmp / STATE, state | {"checkpoint": str(ckpt.relative_to(out))} | opt_meta)
    if not cfg.keep_checkpoints:
        for old in (out / CHECKPOINTS).glob("step-*"):
            if old != ckpt:
                shutil.rmtree(old, ignore_errors=True)
    return ckpt


def _resume(model, opt, out: Path) -> int:
    state_path = out / RESUME / STATE
    if not state_path.is_file():
        return 0
    state = read_json(state_path, "resume state")
    ckpt = out / state["checkpoint"]
    from safetensors.torch import load_file

    try:
        weights = load_file(str(ckpt / "model.safetensors"))
    except Exception as e:
        raise BadInput(f"{ckpt}: cannot resume, checkpoint unreadable ({str(e).splitlines()[0]})") from None
    model.backbone.load_state_dict(weights, strict=False)
    model.backbone.tie_weights()
    model.load_state_dict(load_tensors(ckpt / HEADS_FILE, "heads file"), strict=False)
    _load_opt(opt, load_tensors(out / RESUME / "optimizer.safetensors", "optimizer state"), state)
    return int(state["step"])


# ---------------------------------------------------------------------- training


def train_run(cfg: TrainConfig, out: str | Path, *, name: str | None = None, preset: str = "custom",
              overwrite: bool = False, progress: bool = True, stop_after: int | None = None,
              threads: int | None = None) -> dict:
    """Train (or resume) one run; returns metrics.json's content. ``stop_after`` simulates a kill.

    ``threads``: torch intra-op threads (None: the idle cores, ``cpu.auto_threads``). On a shared
    CPU, threads that wait for a busy core spin (measured: benchmarks/README.md).
    """
    from karma_probe.core.cpu import torch_threads
    from karma_probe.train.distributed import accelerator, on_main

    out = Path(out)
    cfg = cfg.resolve()
    accel = accelerator()  # before any write: only its main process writes the run directory
    created = _first_missing(out)
    new_run = overwrite or not (out / CONFIG).is_file() or not _started(out)
    meta = on_main(accel, lambda: _prepare_dir(cfg, out, name or out.name, preset, overwrite, accel.num_processes))
    main = accel.is_main_process  # the other processes train in step with it and write nothing
    backup = _backup(out)
    try:
        with torch_threads(threads):
            return _train(cfg, out, meta, accel, progress=progress, stop_after=stop_after)
    except BaseException:
        if main and new_run:
            _undo_unstarted(out, created)
        if main and backup.is_dir() and not (out / RESUME / STATE).is_file():
            # --overwrite failed before the new run's first checkpoint: the old run comes back
            shutil.rmtree(out, ignore_errors=True)
            backup.rename(out)
        raise
    finally:
        if main and backup.is_dir() and (out / RESUME / STATE).is_file():
            shutil.rmtree(backup, ignore_errors=True)


def _train(cfg: TrainConfig, out: Path, meta: dict, accel, *, progress: bool, stop_after: int | None) -> dict:
    if (out / METRICS).is_file() and (out / CHECKPOINT / CONFIG).is_file():
        return read_json(out / METRICS)

    progress = progress and accel.is_main_process  # one set of bars, not one per process
    dataset = load_dataset(cfg.dataset)
    split = dataset.split()
    model = build_model(cfg, dataset=dataset, progress=progress)
    _freeze(model, cfg)
    opt = _optimizer(model, cfg)
    start = _resume(model, opt, out)
    elapsed_before = _elapsed_before(out, start)
    objective = KarmaObjective(model, cfg.lambda_gen, cfg.lambda_rec, full_softmax=cfg.act_loss == "softmax")
    objective, opt = accel.prepare(objective, opt)
    shared = _shared_parameters(accel.unwrap_model(objective).model)
    batches = make_batches(cfg, dataset, split.train, model.tokenizer, rank=accel.process_index)
    autocast = torch.autocast(accel.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    objective.train()

    bar = None
    if progress and accel.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {meta['name']}", unit="step", dynamic_ncols=True)
    t0, tokens = time.perf_counter(), 0
    for step in range(start, cfg.steps):
        if stop_after is not None and step >= stop_after:
            return {}
        batch = {k: v.to(accel.device) for k, v in batches(step).items()}
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(step, cfg)
        with autocast:
            terms = objective(batch)
        grad_log = {}
        if cfg.balance_rho > 0 or (cfg.grad_norm_every and (step + 1) % cfg.grad_norm_every == 0):
            terms, grad_log = _per_loss_gradients(terms, shared, cfg)
        logged = {k: float(v.detach()) for k, v in terms.items()}
        for key in ("l_act", "l_gen", "l_rec", "loss"):
            if key in logged and not math.isfinite(logged[key]):
                kept = (f"its last checkpoint is kept in {out}" if (out / RESUME / STATE).is_file()
                        else "no checkpoint yet: nothing is kept")
                raise Diverged(f"step {step + 1}: loss term {key} is {logged[key]}; the run stopped ({kept})")
        opt.zero_grad(set_to_none=True)
        accel.backward(terms["loss"])
        if cfg.grad_clip:
            accel.clip_grad_norm_(objective.parameters(), cfg.grad_clip)
        opt.step()
        tokens += int(batch["n_tokens"])
        done = step + 1
        if accel.is_main_process and (done % cfg.log_every == 0 or done == cfg.steps or
                                      (grad_log and cfg.grad_norm_every and done % cfg.grad_norm_every == 0)):
            dt = time.perf_counter() - t0
            rec = {"step": done, **{k: round(v, 5) for k, v in logged.items()}, **grad_log,
                   "lr": opt.param_groups[0]["lr"], "tokens_per_s": round(tokens / max(dt, 1e-9), 1),
                   "elapsed_s": round(elapsed_before + dt, 2)}
            append_jsonl(out / TRAIN_LOG, rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in logged.items() if k.startswith("l")} |
                            {"tok/s": f"{tokens / max(time.perf_counter() - t0, 1e-9):.0f}"})
        if accel.is_main_process and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            _save_checkpoint(accel.unwrap_model(objective).model, opt, cfg, out, done, meta)
        accel.wait_for_everyone()
    if bar is not None:
        bar.close()
    if not accel.is_main_process:
        return {}
    _drop_stale_log(out, cfg.steps)
    model = accel.unwrap_model(objective).model
    model.eval()
    with atomic_dir(out / CHECKPOINT) as tmp:
        model.save(tmp, _checkpoint_state(cfg, cfg.steps, meta))
    metrics = evaluate_run(model, dataset, split, cfg, progress=progress)
    write_json(out / METRICS, metrics)
    return metrics


def _shared_parameters(model) -> list[torch.Tensor]:
    """The parameters every loss term trains: the backbone's trainable ones (the top decoder layers
    and the final norm in the top-k regime; every decoder layer in a full fine-tune). Per-loss
    gradient norms and the balanced form are measured there."""
    return [p for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]


def _per_loss_gradients(terms: dict, shared: list, cfg: TrainConfig) -> tuple[dict, dict]:
    """Each term's gradient norm on the shared parameters and the pairwise cosines (logged as
    ``gn_*``, ``cos_*``); with ``balance_rho > 0`` also the balanced weights ``w_gen``, ``w_rec``
    and the ratios ``ratio_gen`` = w·‖g_gen‖/‖g_act‖ (≤ ρ by construction), with the loss
    re-weighted by them. Returns (terms, log fields)."""
    stats = gradient_stats(loss_gradients(terms, shared))
    log = {k: round(v, 6) for k, v in stats.items()}
    if cfg.balance_rho <= 0:
        return terms, log
    lambdas = {k: lam for k, lam in (("gen", cfg.lambda_gen), ("rec", cfg.lambda_rec)) if f"l_{k}" in terms}
    weights = balanced_weights(stats, lambdas, cfg.balance_rho)
    terms = dict(terms)
    terms["loss"] = terms["l_act"] + sum(w * terms[f"l_{k}"] for k, w in weights.items())
    for k, w in weights.items():
        log[f"w_{k}"] = round(w, 6)
        log[f"ratio_{k}"] = round(w * stats[f"gn_{k}"] / stats["gn_act"], 6) if stats["gn_act"] > 0 else 0.0
    return terms, log


def _drop_stale_log(out: Path, steps: int) -> None:
    """After a resume the log may hold steps past the resumed checkpoint twice: keep the last of each."""
    rows = read_jsonl(out / TRAIN_LOG)
    by_step = {r["step"]: r for r in rows if r.get("step", 0) <= steps}
    if len(by_step) != len(rows):
        from karma_probe.rundir import atomic_path
        import json

        with atomic_path(out / TRAIN_LOG) as tmp:
            tmp.write_text("".join(json.dumps(by_step[s]) + "\n" for s in sorted(by_step)))


def evaluate_run(model, dataset, split, cfg: TrainConfig, progress: bool = False) -> dict:
    """metrics.json: valid and test metrics (with and without history exclusion), the test users'
    ranks, and the baselines on the same split (evaluate.py)."""
    t0 = time.perf_counter()
    table = model.item_table(max_tokens=cfg.max_target_tokens, batch_size=cfg.eval_batch_size, progress=progress,
                             items=dataset.items)
    result = {"n_items": len(dataset.items), "ranks": {}}
    for name, examples in (("valid", split.valid), ("test", split.test)):
        if cfg.eval_users and cfg.eval_users < len(examples):
            rng = np.random.default_rng(cfg.seed)
            examples = tuple(examples[i] for i in sorted(rng.choice(len(examples), cfg.eval_users, replace=False)))
        m, m_all, r, r_all = evaluate_model(model, examples, table, cfg.max_history, cfg.eval_batch_size, progress,
                                            items=dataset.items)
        result[name], result[f"{name}_all"] = m, m_all
        result[f"n_users_{name}"] = len(examples)
        if name == "test":
            test_examples = examples
            result["users"] = {"test": [e.user for e in examples]}
            result["ranks"] = {"test": r.tolist(), "test_all": r_all.tolist()}
    result["baselines"] = baselines(split, len(dataset.items), test_examples)
    result["random"] = result["baselines"]["random"]["test"]
    result["eval_s"] = round(time.perf_counter() - t0, 1)
    return result
