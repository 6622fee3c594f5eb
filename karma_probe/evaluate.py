"""Full-catalogue retrieval evaluation.

Every item of the catalogue is scored for each user; items already in the user's history are
excluded (except the target itself, which is always rankable). With the target's score s*,
``rank = 1 + #{candidates with score > s*}`` (ties count in the user's favour).

- ``hr@K``   = mean over users of [rank ≤ K]
- ``ndcg@K`` = mean over users of [rank ≤ K] / log2(rank + 1)   (one relevant item, so IDCG = 1)
- ``mrr``    = mean over users of 1 / rank
The random baseline for ``hr@K`` is the mean over users of K / (number of candidates).
"""

from __future__ import annotations

import numpy as np

KS = (10, 50, 200)
NDCG_KS = (10, 50)


def ranks(scores: np.ndarray, targets: np.ndarray, histories: list[list[int]]) -> np.ndarray:
    """(U, N) scores, (U,) target indices, each user's history item indices → (U,) 1-based ranks."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    out = np.empty(len(targets), dtype=np.int64)
    for u, (t, hist) in enumerate(zip(targets, histories)):
        excl = [i for i in hist if i != t]
        scores[u, excl] = -np.inf
        out[u] = 1 + int((scores[u] > scores[u, t]).sum())
    return out


def retrieval_metrics(r: np.ndarray) -> dict[str, float]:
    r = np.asarray(r, dtype=np.float64)
    m = {f"hr@{k}": float((r <= k).mean()) for k in KS}
    m.update({f"ndcg@{k}": float(np.where(r <= k, 1.0 / np.log2(r + 1), 0.0).mean()) for k in NDCG_KS})
    m["mrr"] = float((1.0 / r).mean())
    return m


def random_baseline(n_items: int, histories: list[list[int]], targets) -> dict[str, float]:
    cand = np.array([n_items - len(set(h) - {t}) for h, t in zip(histories, targets)], dtype=np.float64)
    return {f"hr@{k}": float(np.minimum(k / cand, 1.0).mean()) for k in KS} | {"mrr": float(np.mean([np.sum(1.0 / np.arange(1, c + 1)) / c for c in cand]))}


def evaluate(model, dataset, examples, cfg, item_emb=None, progress: bool = False) -> dict[str, float]:
    """Rank the whole catalogue for each example (history → target)."""
    from karma_probe.prompts import history_prompt, item_text

    if item_emb is None:
        item_emb = model.item_embeddings([item_text(it) for it in dataset.items], batch_size=cfg.eval_batch_size,
                                         max_tokens=cfg.max_target_tokens, progress=progress)
    prompts = [history_prompt([dataset.items[i] for i in e.history], cfg.max_history) for e in examples]
    users = model.interest_embeddings(prompts, batch_size=cfg.eval_batch_size, progress=progress)
    scores = (users @ item_emb.T).numpy()
    hist = [list(e.history) for e in examples]
    tgt = np.array([e.target for e in examples])
    return retrieval_metrics(ranks(scores, tgt, hist))
