"""Full-catalogue retrieval evaluation, and the baselines every run is read against.

Every item of the catalogue is scored for each user. With the target's score s*, its rank is

    rank = 1 + #{candidates j ≠ target: s_j > s*} + #{candidates j ≠ target: s_j = s*}

so **ties count against the model**: a model that scores every item the same ranks every target
last (HR@K = 0), never first. Two protocols:

- ``test`` / ``valid``: the user's history items are not candidates (the target always is);
- ``test_all``: every item is a candidate (RecBole's full-sort protocol for sequential models).

Metrics over users (one relevant item, so IDCG = 1):

- ``hr@K``   = mean [rank ≤ K]
- ``ndcg@K`` = mean [rank ≤ K] / log2(rank + 1)
- ``mrr``    = mean 1 / rank

Baselines on the same split and protocol (``baselines`` in metrics.json):

- ``random``: the closed form of a uniformly random ranking, E[HR@K] = K / #candidates;
- ``popularity``: items ranked by how often they occur in the training prefixes;
- ``markov``: first-order Markov, items ranked by how often they followed the user's last item in
  the training prefixes, ties broken by popularity.

Per-user ranks of the test split are kept (``ranks``), in the split's user order, so runs and
baselines can be compared user by user (paired bootstrap).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from karma_probe.data.dataset import Examples

KS = (10, 50, 200)
NDCG_KS = (10, 50)


def ranks(scores: np.ndarray, targets: np.ndarray, histories: list[list[int]] | None) -> np.ndarray:
    """(U, N) scores, (U,) target indices, each user's history item indices (None: no exclusion)
    → (U,) 1-based ranks, ties counted against the target."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.empty(len(targets), dtype=np.int64)
    for u, t in enumerate(targets):
        s = scores[u]
        ahead = s >= s[t]
        ahead[t] = False
        if histories is not None:
            excl = [i for i in histories[u] if i != t]
            ahead[excl] = False
        out[u] = 1 + int(ahead.sum())
    return out


def retrieval_metrics(r: np.ndarray) -> dict[str, float]:
    r = np.asarray(r, dtype=np.float64)
    m = {f"hr@{k}": float((r <= k).mean()) for k in KS}
    m.update({f"ndcg@{k}": float(np.where(r <= k, 1.0 / np.log2(r + 1), 0.0).mean()) for k in NDCG_KS})
    m["mrr"] = float((1.0 / r).mean())
    return m


def random_baseline(n_items: int, histories: list[list[int]] | None, targets) -> dict[str, float]:
    """Expected metrics of a uniformly random ranking of each user's candidates (closed form)."""
    if histories is None:
        cand = np.full(len(targets), n_items, dtype=np.float64)
    else:
        cand = np.array([n_items - len(set(h) - {t}) for h, t in zip(histories, targets)], dtype=np.float64)
    out = {f"hr@{k}": float(np.minimum(k / cand, 1.0).mean()) for k in KS}
    # a uniformly random rank r in 1..c: E[[r ≤ K] / log2(r + 1)] = Σ_{r ≤ min(K, c)} 1 / log2(r + 1) / c
    for k in NDCG_KS:
        out[f"ndcg@{k}"] = float(np.mean([np.sum(1.0 / np.log2(np.arange(2, min(k, int(c)) + 2))) / c for c in cand]))
    out["mrr"] = float(np.mean([np.sum(1.0 / np.arange(1, c + 1)) / c for c in cand]))
    return out


def popularity_scores(split, n_items: int) -> np.ndarray:
    """How often each item occurs in the training prefixes (history + targets of split.train).  # (n_items,)"""
    counts = np.zeros(n_items, dtype=np.float64)
    for seq in _train_prefixes(split):
        np.add.at(counts, list(seq), 1.0)
    return counts


def markov_scores(split, n_items: int, examples) -> np.ndarray:
    """First-order Markov: count(last item → j) in the training prefixes, popularity as tiebreak.  # (U, n_items)"""
    follows: dict[int, Counter] = {}
    for seq in _train_prefixes(split):
        for a, b in zip(seq, seq[1:]):
            follows.setdefault(a, Counter())[b] += 1
    pop = popularity_scores(split, n_items)
    tiebreak = pop / (pop.max() + 1.0)  # < 1: never outranks one more observed transition
    out = np.tile(tiebreak, (len(examples), 1))
    for u, e in enumerate(examples):
        for j, c in follows.get(e.history[-1], {}).items():
            out[u, j] += c
    return out


def _train_prefixes(split) -> list[tuple[int, ...]]:
    """Each user's training prefix (the longest train example's history + its target)."""
    return Examples.of(split.train).prefixes()


def protocol_metrics(scores: np.ndarray, examples) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """→ (metrics with history exclusion, metrics without, their per-user ranks)."""
    tgt = np.array([e.target for e in examples])
    r_excl = ranks(scores, tgt, [list(e.history) for e in examples])
    r_all = ranks(scores, tgt, None)
    return retrieval_metrics(r_excl), retrieval_metrics(r_all), r_excl, r_all


def baselines(split, n_items: int, test=None) -> dict:
    """random / popularity / markov on the test examples (default: the whole test split), both
    protocols, with per-user ranks."""
    test = split.test if test is None else test
    hist, tgt = [list(e.history) for e in test], [e.target for e in test]
    out = {"random": {"test": random_baseline(n_items, hist, tgt), "test_all": random_baseline(n_items, None, tgt)}}
    pop = np.tile(popularity_scores(split, n_items), (len(test), 1))
    for name, scores in (("popularity", pop), ("markov", markov_scores(split, n_items, test))):
        m, m_all, r, r_all = protocol_metrics(scores, test)
        out[name] = {"test": m, "test_all": m_all, "ranks": {"test": r.tolist(), "test_all": r_all.tolist()}}
    return out


def evaluate_model(model, examples, table, max_history: int, batch_size: int = 64,
                   progress: bool = False, *, items=None) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """Score the whole catalogue for each example (history → target): ``protocol_metrics`` of the model.
    ``items``: the catalogue's items (a text-interface model renders histories from them)."""
    interest = model.interest_for([e.history for e in examples], max_history, batch_size=batch_size,
                                  progress=progress, items=items)
    return protocol_metrics(model.scores(interest, table).numpy(), examples)
