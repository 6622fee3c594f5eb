"""Capture a run directory (or create a reference run of an untouched model) end to end.

    load the run's model  →  seeded probe set  →  backend + reducers  →  embeddings  →  RUN/capture/

Everything that can be wrong with the input (missing or truncated checkpoint, a tokenizer from
another model, an empty probe set, bad options) is found before anything is written; the
capture directory (and, for a new reference run, the whole run directory) appears atomically.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from karma_probe.capture.probes import (DEFAULT_MAX_ITEMS, DEFAULT_PROBES, DEFAULT_TEXT_PROBES, PROBE_SEED, SETS,
                                       build_probe_set, shard, shard_offset)
from karma_probe.core.errors import BadInput
from karma_probe.data.prompts import code_token
from karma_probe.rundir import (CAPTURE, CHECKPOINT, CONFIG, STATE, atomic_dir, checkpoint_state, config_hash, git_sha,
                                now, read_json, versions, write_json)
from karma_probe.rundir.capture import Capture, write_capture
from karma_probe.rundir.chain import DERIVED, derivation


@dataclass(frozen=True)
class CaptureOptions:
    probes: int = DEFAULT_PROBES  # history probes (test-split users)
    text_probes: int | None = DEFAULT_TEXT_PROBES  # the first N general passages; None = all
    max_len: int = 256  # T: probes are cut to this many tokens
    full_maps: int = 4  # K: full attention maps of the first K history probes
    backend: str = "torch"  # torch | tl
    batch_size: int = 8
    chunk_size: int = 256  # at most this many query rows per attention chunk (attention.BLOCK_ELEMENTS)
    seed: int = PROBE_SEED
    shard: tuple[int, int] = (0, 1)  # (index, count): capture only this contiguous part of each set
    progress: bool = True
    probes_file: str | None = None  # the user's own prompts (probes.read_probes_file): the "user" set
    device: str = "cpu"  # cpu | cuda | mps | auto (karma_probe.core.device)
    dtype: str = "float32"  # float32 | bfloat16 | float16: the weights; statistics stay float32


def model_fingerprint(backbone) -> dict:
    c = backbone.config
    return {"architecture": type(backbone).__name__, "layers": c.num_hidden_layers, "heads": c.num_attention_heads,
            "kv_heads": getattr(c, "num_key_value_heads", c.num_attention_heads), "width": c.hidden_size,
            "vocab": c.vocab_size}


def capture_model(kmodel, tokenizer, *, dataset, max_items: int, max_target_tokens: int | None,
                  opts: CaptureOptions, run: dict) -> Capture:
    """Capture a loaded retrieval model (``retriever.KarmaModel``) on the seeded probe set of ``dataset``
    (None: no history probes, only the general passages and the ``opts.probes_file`` prompts)."""
    import torch

    from karma_probe.capture.backends import make_backend
    from karma_probe.capture.probes import read_probes_file
    from karma_probe.capture.session import HistoryInputs, capture_probes

    if dataset is not None:
        kmodel.check_catalogue(len(dataset.items), f"{run.get('checkpoint', 'the model')}")
    user = read_probes_file(opts.probes_file) if opts.probes_file else ()
    full = build_probe_set(dataset, opts.probes, n_text=opts.text_probes, seed=opts.seed, max_items=max_items,
                           user=user)
    probes = shard(full, *opts.shard)
    if not len(probes):
        raise BadInput(f"empty probe set: shard {opts.shard[0]}/{opts.shard[1]} of {len(full)} probes holds none")

    continuous = getattr(kmodel, "interface", "text") == "continuous" and dataset is not None
    if continuous and opts.backend != "torch":
        raise BadInput(f"--backend {opts.backend} captures text-interface runs only; this run feeds items as "
                       "input embeddings: use --backend torch")
    t0 = time.perf_counter()
    backend = make_backend(opts.backend, kmodel.backbone, tokenizer, chunk_size=opts.chunk_size)
    try:
        result = capture_probes(kmodel.backbone, tokenizer, probes, backend, max_len=opts.max_len,
                                batch_size=opts.batch_size, full_maps=opts.full_maps,
                                map_offset=shard_offset(full, *opts.shard, "history"), progress=opts.progress,
                                history_inputs=HistoryInputs(kmodel.history_sequence,
                                                             torch.no_grad()(kmodel.history_inputs))
                                if continuous else None)
    finally:
        backend.close()

    t1 = time.perf_counter()
    history = probes.history
    e = kmodel.embed_dim
    hidden = {
        "marker_hidden": result.marker_hidden.float(),  # (N, L+1, d)
        "interest": kmodel.interest_for([p.items for p in history], max_items, batch_size=16,
                                        items=dataset.items).float() if history else torch.zeros(0, e),  # (N, e)
        "items": kmodel.item_table(max_tokens=max_target_tokens, batch_size=64, items=dataset.items).float()
        if dataset is not None else torch.zeros(0, e),  # (n_items, e)
        "targets": torch.tensor([p.target for p in history], dtype=torch.long),  # (N,)
        # the other sets' last-token hidden states, every layer (geometry of a model without a dataset)
        **{f"{name}_hidden": h.float() for name, h in result.last_hidden.items() if name != "history"},
    }
    # Map axes of a continuous run are items: label them with titles (a text run's are decoded tokens).
    map_labels = {}
    if continuous:
        for key, ids in result.maps.items():
            if key.endswith(".input_ids"):
                map_labels[key.split(".")[0]] = [short_title(dataset.items[int(i)]) if i >= 0
                                                 else tokenizer.decode([code_token(int(i))]) for i in ids]
    t2 = time.perf_counter()
    sets = {}
    for name in SETS:
        ps = probes.by_set(name)
        if name == "user" and not ps:
            continue  # captures without a probes file look as they always did
        s = {"count": len(ps), "truncated": result.truncated[name], "texts": [p.text for p in ps],
             "lengths": result.lengths[name]}
        if name == "history":
            s |= {"users": [p.user for p in ps], "targets": [p.target for p in ps], "items": [list(p.items) for p in ps]}
        sets[name] = s
    manifest = {
        "backend": opts.backend,
        "model": model_fingerprint(kmodel.backbone),
        "probes": {"seed": opts.seed, "count": len(probes), "max_len": opts.max_len, "max_items": max_items,
                   "dataset": dataset.name if dataset is not None else None, "shard": f"{opts.shard[0]}/{opts.shard[1]}",
                   **({"file": str(opts.probes_file)} if opts.probes_file else {}), **sets},
        "placement": {"device": kmodel.device.type,
                      "dtype": str(next(kmodel.backbone.parameters()).dtype).removeprefix("torch.")},
        "interface": "continuous" if continuous else "text",
        "map_labels": map_labels,
        "full_maps": sorted(int(k[len("probe"):].split(".")[0]) for k in result.maps if k.endswith(".attn")),
        "chunk_size": opts.chunk_size,
        "elapsed_s": {"probes": round(t1 - t0, 2), "embeddings": round(t2 - t1, 2)},
        "run": run,
        "created": now(),
        "git_sha": git_sha(),
        "versions": versions(),
    }
    return Capture(manifest, result.stats, result.maps, hidden)


def short_title(item, width: int = 28) -> str:
    """An item's title as an axis label: the readable title, cut to ``width`` characters."""
    from karma_probe.data.prompts import readable_title

    title = readable_title(item.title)
    return title if len(title) <= width else title[: width - 1] + "…"


def _run_info(run_dir: Path, meta: dict) -> dict:
    state = {}
    if (run_dir / CHECKPOINT / STATE).is_file():
        state = read_json(run_dir / CHECKPOINT / STATE, "checkpoint state")
    return {"name": meta.get("name", run_dir.name), "condition": meta.get("condition"), "seed": meta.get("seed"),
            "checkpoint": str(run_dir / CHECKPOINT), "step": state.get("step")}


def capture_run(run_dir: str | Path, opts: CaptureOptions = CaptureOptions(), *, out: str | Path | None = None) -> Path:
    """Capture ``run_dir`` (trained or reference run) into ``out`` (default ``RUN/capture``)."""
    from karma_probe.data.dataset import load_dataset
    from karma_probe.core.device import resolve
    from karma_probe.model.retriever import load_run_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInput(f"{run_dir}: run directory not found")
    meta = read_json(run_dir / CONFIG, "run config")
    placement = resolve(opts.device, opts.dtype)
    kmodel, tok, cfg = load_run_model(run_dir, placement=placement)
    train = meta.get("train", {})
    cap = capture_model(kmodel, tok, dataset=load_dataset(cfg.dataset) if cfg.dataset else None,
                        max_items=int(train.get("max_history", DEFAULT_MAX_ITEMS)),
                        max_target_tokens=getattr(cfg, "max_target_tokens", None), opts=opts,
                        run=_run_info(run_dir, meta))
    cap.manifest[DERIVED] = derivation(checkpoint=run_dir / CHECKPOINT)  # rundir.chain: what it was made from
    return write_capture(out or run_dir / CAPTURE, cap)


def create_base_run(model: str, out: str | Path, opts: CaptureOptions = CaptureOptions(), *,
                    dataset: str | None = "ml-100k", max_items: int = DEFAULT_MAX_ITEMS, cfg=None,
                    adapter: str | None = None, untouched: bool = False) -> Path:
    """A run of ``model`` as loaded, captured, written atomically: a reference run of a preset's
    backbone (condition ``base``), or a user's own model (condition ``model``: a local
    causal-LM directory, with a PEFT ``adapter`` merged in if given; ``dataset`` None captures no
    history probes, only the general passages and the ``opts.probes_file`` prompts).

    ``checkpoint/`` links to the backbone's files (a ``tiny`` backbone, which has none, is saved),
    with ``state.json`` at step 0. Text interface (``cfg`` None or a text config): no heads, the
    interest embedding is the normalized marker hidden state of the history prompt. Continuous
    interface (``cfg`` of a continuous run): the trained runs' model at step 0 — the untouched
    backbone reading the same item input embeddings, with freshly initialized item tokens and heads
    (saved in ``heads.safetensors``) — so the reference sees probes of the same form as the runs.
    With ``untouched`` the backbone itself is the reference even for a continuous ``cfg`` (text
    interface, no heads), recorded with that config's ``train_layers`` so its metrics over the
    trained layers cover the same layers as the runs'. A reference run's config.json names what
    it is: ``reference`` "step 0" or "untouched" (results.group_runs names its column so).
    An existing run of the same model (and adapter) is recaptured in place; any other directory is refused.
    """
    from karma_probe.core.config import TrainConfig
    from karma_probe.data.dataset import load_dataset
    from karma_probe.core.device import resolve
    from karma_probe.model.backbones import SMOLLM2
    from karma_probe.rundir.layout import BASE, MODEL

    out = Path(out)
    condition = BASE if model in (SMOLLM2, "tiny") and adapter is None else MODEL
    if condition == MODEL:  # a user's directories, by absolute path: the run names them wherever it is read
        model = model if model in (SMOLLM2, "tiny") else str(Path(model).resolve())
        adapter = str(Path(adapter).resolve()) if adapter is not None else None
    if out.exists():
        meta = read_json(out / CONFIG, "run config") if (out / CONFIG).is_file() else None
        if meta is None and any(out.iterdir()):
            raise BadInput(f"{out}: exists and is not a run directory; choose another --out")
        if meta is not None:
            train = meta.get("train", {})
            if meta.get("condition") != condition or train.get("model") != model or train.get("adapter") != adapter:
                what = f"{model!r}" + (f" with adapter {adapter!r}" if adapter else "")
                raise BadInput(f"{out}: already holds a {meta.get('condition')!r} run of {train.get('model')!r}"
                               f"{' with adapter ' + repr(train['adapter']) if train.get('adapter') else ''}, "
                               f"not a {condition} run of {what}")
            return capture_run(out, opts)

    placement = resolve(opts.device, opts.dtype)  # an unavailable device is refused before any loading
    data = load_dataset(dataset) if dataset is not None else None
    kmodel, train = base_run_model(model, data, dataset, max_items=max_items, cfg=cfg, seed=opts.seed,
                                   untouched=untouched or condition != BASE, adapter=adapter, placement=placement)
    meta = {"name": out.name, "condition": condition, "preset": None, "seed": opts.seed, "train": train,
            "config_hash": config_hash(train), "git_sha": git_sha(), "versions": versions(), "created": now()}
    if condition == BASE:  # what the reference is, so no column is called "untouched" unless it is
        meta["reference"] = "step 0" if kmodel.has_heads else "untouched"
    # the checkpoint describes itself (retriever.checkpoint_config): the full config it stands for
    state = checkpoint_state(0, condition, meta["config_hash"], TrainConfig.from_dict(train).to_dict())
    run = {"name": out.name, "condition": condition, "seed": opts.seed, "checkpoint": str(out / CHECKPOINT), "step": 0}
    cap = capture_model(kmodel, kmodel.tokenizer, dataset=data, max_items=max_items, max_target_tokens=train.get("max_target_tokens"),
                        opts=opts, run=run)
    with atomic_dir(out) as tmp:
        write_json(tmp / CONFIG, meta)
        _link_checkpoint(kmodel, model, tmp / CHECKPOINT, state, merged=adapter is not None)
        cap.manifest[DERIVED] = derivation(checkpoint=tmp / CHECKPOINT)  # names and bytes: the same after the swap
        write_capture(tmp / CAPTURE, cap)
    return out / CAPTURE


def base_run_model(model: str, data, dataset: str | None, *, max_items: int, cfg=None, seed: int = 0,
                   untouched: bool = False, adapter: str | None = None, placement=None):
    """``model`` as a reference run sees it, on ``data`` (loaded from the spec ``dataset``; None: no
    dataset) → ``(KarmaModel, train config dict)``: the step-0 retriever of a continuous ``cfg``
    (fresh item tokens and heads), else (or with ``untouched``) the bare backbone with the text
    interface, a PEFT ``adapter`` merged in if given (see :func:`create_base_run`)."""
    import dataclasses

    from karma_probe.model.retriever import base_model, build_model

    if cfg is not None and cfg.interface == "continuous" and data is not None and not untouched:
        cfg = dataclasses.replace(cfg, model=model, dataset=dataset, max_history=max_items, seed=seed)
        kmodel = build_model(cfg, dataset=data).eval()
        if placement is not None:
            kmodel = kmodel.to(device=placement.device, dtype=placement.torch_dtype)
        return kmodel, cfg.to_dict()
    train = {"model": model, "dataset": dataset, "max_history": max_items, "seed": seed,
             "train_layers": cfg.train_layers if cfg is not None else 0}
    if adapter is not None:
        train["adapter"] = adapter
    return base_model(model, adapter=adapter, placement=placement), train


def _link_checkpoint(kmodel, spec: str, ckpt: Path, state: dict, merged: bool = False) -> None:
    """``checkpoint/``: links to the model's files, or (tiny; an adapter merged in) the weights saved."""
    from karma_probe.model.backbones import SMOLLM2, smollm2_dir

    if spec == "tiny" or merged:  # merged: the weights analyze must load are the adapted ones
        kmodel.save(ckpt, state)
        return
    if kmodel.has_heads:  # continuous step-0 model: its item tokens and heads beside the linked backbone
        from karma_probe.model.retriever import HEADS_FILE
        from karma_probe.rundir import save_tensors

        ckpt.mkdir(parents=True)
        save_tensors(ckpt / HEADS_FILE, kmodel.head_state())
    src = (smollm2_dir() if spec == SMOLLM2 else Path(spec)).resolve()
    ckpt.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name != STATE:
            try:
                os.symlink(f, ckpt / f.name)
            except OSError:  # filesystems without symlinks get a copy
                shutil.copy2(f, ckpt / f.name)
    write_json(ckpt / STATE, state)
