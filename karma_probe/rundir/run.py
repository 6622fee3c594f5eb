"""The run-level files: config.json, metrics.json, train_log.jsonl, and each checkpoint's state.json.

Readers return plain data checked against checkpoints.md; anything malformed is a BadInput
naming the file and the field (:mod:`karma_probe.rundir.fields`). The writers of these files are
training (``config.json``, ``metrics.json``, ``train_log.jsonl``, ``state.json``) and the capture
of a reference run; they use :mod:`karma_probe.rundir.io` and the names in
:mod:`karma_probe.rundir.layout`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from karma_probe.core.errors import BadInput
from karma_probe.rundir.fields import expect, is_int, numbers
from karma_probe.rundir.io import read_json, read_jsonl
from karma_probe.rundir.layout import CONFIG, METRICS, STATE, STEP_DIR, TRAIN_LOG, RunPaths


def read_config(run_dir: str | Path, *, required: bool = False) -> dict[str, Any]:
    """``config.json`` of a run (checkpoints.md, "config.json"); ``{}`` when absent unless ``required``."""
    f = Path(run_dir) / CONFIG
    if not f.exists() and not required:
        return {}
    return expect(read_json(f, "run config"), dict, str(f))


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """``metrics.json`` of a run (or a checkpoint dir), checked; None when absent.

    ``{"valid": {...}, "test": {...}, "test_all": {...}, "random": {...}, "n_items", "n_users"}``, and
    where training wrote them ``"ranks": {"test": [int], "test_all": [int]}`` and
    ``"baselines": {"popularity": {"test": {...}, "test_all": {...}, "ranks": {...}}, ...}``.
    """
    f = Path(run_dir) / METRICS
    if not f.exists():
        return None
    obj = expect(read_json(f, "retrieval metrics"), dict, str(f))
    for split in ("valid", "test", "test_all", "random"):
        if split in obj:
            obj[split] = numbers(obj[split], f"{f}: {split}")
    if "ranks" in obj:
        obj["ranks"] = _ranks(obj["ranks"], f"{f}: ranks")
    for name, b in expect(obj.get("baselines") or {}, dict, f"{f}: baselines").items():
        b = expect(b, dict, f"{f}: baselines.{name}")
        for split in ("test", "test_all"):
            if split in b:
                b[split] = numbers(b[split], f"{f}: baselines.{name}.{split}")
        if "ranks" in b:
            b["ranks"] = _ranks(b["ranks"], f"{f}: baselines.{name}.ranks")
    return obj


def _ranks(d: Any, where: str) -> dict[str, list[int]]:
    d = expect(d, dict, where)
    for split, ranks in d.items():
        if not isinstance(ranks, list) or not all(is_int(r) and r >= 1 for r in ranks):
            raise BadInput(f"{where}.{split} must be a list of 1-based integer ranks")
    return d


def read_train_log(run_dir: str | Path) -> tuple[dict, ...]:
    """The logged steps of ``train_log.jsonl`` (() when absent); a last line cut short by a kill is dropped."""
    f = Path(run_dir) / TRAIN_LOG
    rows = read_jsonl(f)
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not is_int(row.get("step")):
            raise BadInput(f"{f}: line {i + 1} is not a logged step (an object with an integer 'step')")
    return tuple(rows)


def checkpoint_state(step: int, condition: str, config_hash: str, train: dict) -> dict[str, Any]:
    """A checkpoint's ``state.json``: its step and the training config that made it (``train``,
    TrainConfig.to_dict()), so the checkpoint describes itself and loads without its run."""
    return {"step": step, "condition": condition, "config_hash": config_hash, "train": train}


def checkpoint_train(checkpoint: str | Path) -> tuple[dict[str, Any], str | None]:
    """``(train config dict, condition)`` of a checkpoint directory: its own ``state.json``, else
    (a checkpoint written before it described itself) the ``config.json`` of the run above it
    (``RUN/checkpoint`` or ``RUN/checkpoints/step-N``)."""
    ckpt = Path(checkpoint)
    state = read_state(ckpt)
    if isinstance(state.get("train"), dict):
        return state["train"], state.get("condition")
    for run in (ckpt.parent, ckpt.parent.parent):
        meta = read_config(run)
        if meta:
            return expect(meta.get("train", {}), dict, f"{run / CONFIG}: train"), meta.get("condition")
    raise BadInput(f"{ckpt}: the checkpoint does not say how it was trained (no 'train' in {STATE}, "
                   f"and no run {CONFIG} above it)")


def read_state(checkpoint: str | Path) -> dict[str, Any]:
    """A checkpoint's ``state.json`` (``{"step", "condition", "config_hash", "train"}``); ``{}`` when absent."""
    f = Path(checkpoint) / STATE
    return expect(read_json(f, "checkpoint state"), dict, str(f)) if f.is_file() else {}


def checkpoint_step(checkpoint: str | Path) -> int:
    """The training step of an intermediate checkpoint: its ``state.json``, else its name (``step-000100``)."""
    step = read_state(checkpoint).get("step")
    if is_int(step):
        return step
    m = STEP_DIR.fullmatch(Path(checkpoint).name)
    if m is None:
        raise BadInput(f"{checkpoint}: no step in {STATE} and not named step-N")
    return int(m.group(1))


def intermediate_checkpoints(run_dir: str | Path) -> list[Path]:
    """``checkpoints/step-*/`` that hold a model (``config.json``), in step order; [] when none."""
    root = RunPaths(run_dir).checkpoints
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.fullmatch(p.name) and (p / CONFIG).is_file()]
    return sorted(found, key=checkpoint_step)
