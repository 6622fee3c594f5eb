"""Synthetic, schema-valid run directories for tests of everything downstream of ``analyze``.

``make_run(tmp_path, "karma", condition="karma")`` writes what checkpoints.md says a finished
run holds — config.json, metrics.json, train_log.jsonl, analysis.json (records, summary,
higher_is_better, samples, trajectory) and capture/maps.safetensors + hidden.safetensors — with
small seeded random numbers. ``action`` runs are made more collapsed than ``karma`` ones (more
sink mass, lower HR), so comparisons have a known answer. The summary is computed from the
records the same way an analyzer would (mean over cells), so tests can cross-check them.

``users=N`` adds what issue 13's uncertainty needs: per-user test ranks for N users (the same
user order and per-user difficulty in every run, so runs pair up; a more collapsed condition
ranks every target lower), popularity / markov baseline rankers, retrieval metrics recomputed
from those ranks, ``*_gain`` / ``*_shuffled`` decodability metrics and analysis.json
``intervals`` (a probe bootstrap's 95 % CI, here value ± ``interval_half``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from karma_probe.analyzers import catalogue
from karma_probe.rundir import write_json

# directions and families from the catalogue, as a real analysis declares them
HIGHER_IS_BETTER = {f.name: f.higher_is_better for f in catalogue.CATALOGUE}
DECODABILITY = ("recon_token_acc", "recon_exact", "probe_decode_acc", "probe_genre_f1")  # the ones given a null here
INTERVAL_FAMILIES = ("attention", "geometry", "decodability")  # analyze bootstraps these over probes
# how collapsed each condition is made: scales sink mass up and retrieval / decodability down
COLLAPSE = {"action": 0.8, "gen": 0.55, "rec": 0.5, "karma": 0.3, "base": 0.45}


def make_run(root: str | Path, name: str, condition: str = "action", *, seed: int = 0, layers: int = 3,
             heads: int = 4, tokens: int = 10, probes: int = 2, n: int = 24, d: int = 16, e: int = 8,
             n_items: int = 40, capture: bool = True, metrics: bool = True, train_log: bool = True,
             trajectory: bool = True, summary: dict | None = None, users: int | None = None,
             interval_half: float = 0.02, train: dict | None = None, reference: str | None = None) -> Path:
    """Write a run dir at ``root/name`` and return its path; ``summary`` overrides headline values,
    ``train`` adds config fields (e.g. ``{"train_layers": 2}``), ``reference`` names a base run's
    kind ("step 0", "untouched") as reproduce's references do."""
    path = Path(root) / name
    rng = np.random.default_rng([seed, sorted(COLLAPSE).index(condition)])
    c = COLLAPSE[condition]
    records = _records(rng, c, layers, heads)
    summ = _summary(records)
    summ.update({"hr@10": 0.3 - 0.2 * c, "hr@50": 0.5 - 0.2 * c, "hr@200": 0.8 - 0.2 * c,
                 "ndcg@10": 0.2 - 0.1 * c, "mrr": 0.15 - 0.1 * c})
    ranks = _ranks(users, c, seed, n_items) if users else None
    if users:
        summ.update(_rank_metrics(ranks["test"]))
        for m in DECODABILITY:  # the shuffled-embedding null explains part of the raw value
            summ[f"{m}_shuffled"] = 0.6 * summ[m]
            summ[f"{m}_gain"] = summ[m] - summ[f"{m}_shuffled"]
    summ.update(summary or {})
    records += [{"metric": m, "layer": None, "head": None, "value": summ[m]}
                for m in catalogue.RETRIEVAL]
    for r in records:
        r["higher_is_better"] = HIGHER_IS_BETTER[r["metric"]]
    hib = {m: v for m, v in HIGHER_IS_BETTER.items() if m in summ}
    write_json(path / "config.json", {
        "name": name, "condition": condition, "preset": "tiny", "seed": seed,
        "train": {"model": "tiny", "dataset": "synthetic:0", "lambda_gen": 0.0 if condition == "action" else 1.0,
                  "lambda_rec": 1.0 if condition in ("rec", "karma") else 0.0, "steps": 30} | (train or {}),
        "config_hash": "0123456789ab", "git_sha": "f" * 40, "versions": {"numpy": np.__version__},
        "created": "2025-01-01T00:00:00+00:00"} | ({"reference": reference} if reference else {}))
    analysis = {
        "schema": "karma_probe.analysis/1",
        "run": {"name": name, "condition": condition, "seed": seed, "git_sha": "f" * 40,
                "versions": {"numpy": np.__version__}, "model": {"layers": layers, "heads": heads},
                "checkpoint": str(path / "checkpoint"), "step": 30},
        "records": records, "summary": summ,
        "higher_is_better": hib,
        "samples": {"decoded": [{"history": f"Movie {i} (1995) | Drama; Movie {i + 1} (1996) | Comedy",
                                 "truth": f"Target {i} (1997) | Action",
                                 "decoded": f"Target {i} (1997) | Action" if i % 2 else f"Other {i} (1990) | Drama"}
                                for i in range(3)]},
    }
    if users:
        bootstrapped = [m for m in summ if m in catalogue.FACTS and catalogue.FACTS[m].family in INTERVAL_FAMILIES]
        analysis["intervals"] = {m: [summ[m] - interval_half, summ[m] + interval_half]
                                 for m in bootstrapped if summ[m] is not None}
    if trajectory:
        analysis["trajectory"] = [{"step": s, "summary": {k: _scale(v, 0.5 + s / 60) for k, v in summ.items()}}
                                  for s in (10, 20, 30)]
    write_json(path / "analysis.json", analysis)
    if metrics:
        test = {k: summ[k] for k in catalogue.RETRIEVAL} | {"ndcg@50": _scale(summ["ndcg@10"], 1.2)}
        write_json(path / "metrics.json", {
            "valid": {k: _scale(v, 1.05) for k, v in test.items()}, "test": test, "n_items": n_items, "n_users": n,
            "random": {"hr@10": 10 / n_items, "hr@50": min(1.0, 50 / n_items), "hr@200": 1.0}}
            | (_rank_files(ranks) if users else {}))
    if train_log:
        path.joinpath("train_log.jsonl").write_text("".join(
            json.dumps({"step": s, "loss": 3.0 / s ** 0.3, "l_act": 2.0 / s ** 0.3,
                        "l_gen": None if condition == "action" else 1.0 / s ** 0.2,
                        "l_rec": 0.8 / s ** 0.2 if condition in ("rec", "karma") else None,
                        "lr": 1e-3, "tokens_per_s": 1000.0, "elapsed_s": s * 0.1}) + "\n"
            for s in range(1, 31)))
    if capture:
        _capture(path / "capture", rng, c, layers, heads, tokens, probes, n, d, e, n_items)
    return path


def _ranks(users: int, c: float, seed: int, n_items: int) -> dict[str, np.ndarray]:
    """Per-user ranks: a difficulty shared by every run (fixed seed), scaled by the collapse."""
    difficulty = np.random.default_rng(1234).integers(1, n_items // 2, users)
    noise = np.random.default_rng([seed, int(c * 100)]).lognormal(0, 0.2, users)
    test = np.clip(np.round(difficulty * (0.5 + c) * noise), 1, n_items).astype(int)
    return {"test": test, "test_all": np.minimum(n_items, test + 2),
            "popularity": np.clip(np.round(difficulty * 1.6), 1, n_items).astype(int),
            "markov": np.clip(np.round(difficulty * 0.9), 1, n_items).astype(int)}


def _rank_metrics(ranks) -> dict[str, float]:
    r = np.asarray(ranks, float)
    out = {f"hr@{k}": float(np.mean(r <= k)) for k in (10, 50, 200)}
    return out | {"ndcg@10": float(np.mean((r <= 10) / np.log2(r + 1))), "mrr": float(np.mean(1 / r))}


def _rank_files(ranks) -> dict:
    """metrics.json's ranks, test_all and baselines blocks (issue 13's layout)."""
    out = {"ranks": {"test": ranks["test"].tolist(), "test_all": ranks["test_all"].tolist()},
           "test_all": _rank_metrics(ranks["test_all"]), "baselines": {}}
    for name in ("popularity", "markov"):
        out["baselines"][name] = {"test": _rank_metrics(ranks[name]), "test_all": _rank_metrics(ranks[name]),
                                  "ranks": {"test": ranks[name].tolist(), "test_all": ranks[name].tolist()}}
    return out


def _scale(v, factor):
    return None if v is None else v * factor  # None: a metric the analyzer could not compute


def _records(rng, c: float, layers: int, heads: int) -> list[dict]:
    out = []
    for layer in range(layers):
        for head in range(heads):
            sink = float(np.clip(c * (layer + 1) / layers * rng.uniform(0.6, 1.0), 0, 1))
            out += [{"metric": "sink_mass", "layer": layer, "head": head, "value": sink},
                    {"metric": "key_concentration", "layer": layer, "head": head, "value": 0.1 + 0.5 * sink},
                    {"metric": "attn_entropy", "layer": layer, "head": head, "value": 1 - 0.8 * sink}]
    for layer in range(layers + 1):
        out += [{"metric": "massive_act", "layer": layer, "head": None, "value": 5 + 40 * c * layer / layers},
                {"metric": "aniso_cos", "layer": layer, "head": None, "value": 0.2 + 0.6 * c * layer / layers}]
    sinks = [r["value"] for r in out if r["metric"] == "sink_mass"]
    out += [{"metric": "sink_rate", "layer": None, "head": None, "value": float(np.mean(np.array(sinks) > 0.3))}]
    for metric, value in {"erank": 6 * (1 - c) + 1, "top1_var": 0.2 + 0.6 * c, "isotropy": 0.8 - 0.6 * c,
                          "uniformity": -3 + 2 * c, "recon_token_acc": 0.9 - 0.8 * c, "recon_exact": 0.5 - 0.5 * c,
                          "probe_genre_f1": 0.6 - 0.3 * c, "probe_decode_acc": 0.7 - 0.5 * c,
                          "lm_ppl": 20 + 30 * c, "fact_acc": 0.8 - 0.4 * c}.items():
        out.append({"metric": metric, "layer": None, "head": None, "value": float(value + rng.normal(0, 0.01))})
    return out


def _summary(records: list[dict]) -> dict[str, float]:
    by_metric: dict[str, list[float]] = {}
    for r in records:
        by_metric.setdefault(r["metric"], []).append(r["value"])
    return {m: float(np.mean(v)) for m, v in by_metric.items()}


def _capture(out: Path, rng, c: float, layers, heads, tokens, probes, n, d, e, n_items) -> None:
    out.mkdir(parents=True, exist_ok=True)
    maps = {}
    for k in range(probes):
        t = tokens + k  # probes differ in length, as real ones do
        scores = rng.normal(0, 1, (layers, heads, t, t))
        scores[..., 0] += 4 * c  # the sink column
        scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)  # causal
        p = np.exp(scores - scores.max(-1, keepdims=True))
        maps[f"probe{k}.attn"] = (p / p.sum(-1, keepdims=True)).astype(np.float32)  # (L, H, T, T)
        maps[f"probe{k}.input_ids"] = rng.integers(0, 1000, t).astype(np.int64)
    save_file(maps, str(out / "maps.safetensors"))
    # collapse pulls every vector towards one shared direction
    shared = rng.normal(0, 1, e)
    interest = rng.normal(0, 1, (n, e)) + 3 * c * shared
    items = rng.normal(0, 1, (n_items, e)) + 3 * c * shared
    save_file({"marker_hidden": rng.normal(0, 1, (n, layers + 1, d)).astype(np.float32),
               "interest": (interest / np.linalg.norm(interest, axis=1, keepdims=True)).astype(np.float32),
               "items": (items / np.linalg.norm(items, axis=1, keepdims=True)).astype(np.float32),
               "targets": rng.integers(0, n_items, n).astype(np.int64)}, str(out / "hidden.safetensors"))
