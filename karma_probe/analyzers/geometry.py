"""Embedding-geometry metrics: how much of the space a set of vectors uses.

Each metric is a pure numpy function of one set X [n, d] (rows = vectors), measured on three sets
from the capture (``capture/hidden.safetensors``):

- ``interest``: the test-probe interest embeddings [N, e] — the headline set, since the interest
  embedding is what the action objective collapses;
- ``items``: the whole item catalogue [n_items, e];
- ``marker``: the hidden state at the interest marker, one set per residual index (layer 0 =
  embeddings, layer l = output of decoder layer l−1) [N, d] — where along depth the collapse sets in.

Records: one per (set, layer) with ``layer`` null for ``interest`` and ``items``. A capture with the
user's own prompts (``--probes-file``) adds ``user``: their last-token hidden state per residual
index; a capture without history probes (a user's own model, no dataset) has no interest, item or
marker sets, and its headline is the last layer's last-token state of its headline probe set
(``user``, else ``text``).

The interest and item sets are measured in the run's comparable space (analyzers/space.py): an
untouched model's raw marker state goes through a seeded random head of the trained runs' width.

Uncertainty: the headline (interest set) gets a 95 % bootstrap interval over probes (rows,
analyzers/bootstrap.py). The pairwise metrics (``aniso_cos``, ``uniformity``) are averages over
pairs of distinct probes; a resample averages over pairs of distinct *original* probes (a row
drawn twice is not a pair with itself). The spectral ones (``erank``, ``top1_var``,
``isotropy``) depend on how many distinct rows a set holds, which resampling lowers (~63 %), so
their replicates are bias-shifted to the estimate (bootstrap.shifted): the interval keeps the
spread, not the duplicate artefact.
"""

from __future__ import annotations

import numpy as np

from karma_probe.analyzers import bootstrap
from karma_probe.analyzers.registry import Measurement, register
from karma_probe.rundir.analysis import Record

HEADLINE_SET = "interest"  # without history probes: the headline probe set's last layer (RunInputs.geometry_headline)


# --------------------------------------------------------------------------- pure functions


def _rows(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"expected a [n ≥ 2, d] matrix, got shape {X.shape}")
    return X


def l2_normalize(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.where(n > 0, n, 1.0)


def _spectrum(X) -> np.ndarray:
    """Singular values of the column-centered matrix (the spread around the mean)."""
    X = _rows(X)
    return np.linalg.svd(X - X.mean(0), compute_uv=False)


def _no_spread(X, s: np.ndarray) -> bool:
    """True when the centered set is zero up to rounding (identical vectors): centering leaves
    residues of ~1e-16 relative to the vectors' norm, far below any real spread."""
    X = np.asarray(X, dtype=np.float64)
    scale = np.linalg.norm(X, axis=-1).max() * np.sqrt(len(X))
    return bool(s.max() <= 1e-9 * max(scale, np.finfo(np.float64).tiny))


def aniso_cos(X) -> float:
    """Mean cosine over distinct pairs: (‖Σ x̂_i‖² − n) / (n(n−1)), x̂ = x/‖x‖.

    Range [−1/(n−1), 1]; 1 = all vectors point the same way (collapsed), ≈0 for random directions
    in high dimension. Reference: Ethayarajh, "How Contextual are Contextualized Word
    Representations?" (EMNLP 2019).
    """
    Xn = l2_normalize(_rows(X))
    n = len(Xn)
    s = Xn.sum(0)
    return float((s @ s - (Xn * Xn).sum()) / (n * (n - 1)))


def erank(X) -> float:
    """Effective rank exp(−Σ p_k log p_k), p = σ / ‖σ‖₁, σ = singular values of X − mean(X).

    Range [1, min(n, d)]; 1 = the set spreads along a single direction, min(n, d) = equal spread
    in every direction. A set with no spread at all (identical vectors, σ = 0) is fully collapsed
    and gets 1, the limit of a set whose spread shrinks onto one direction. Reference: Roy &
    Vetterli, "The effective rank: A measure of effective dimensionality" (EUSIPCO 2007).
    """
    s = _spectrum(X)
    if _no_spread(X, s):
        return 1.0
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def top1_var(X) -> float:
    """Share of variance on the first principal component: σ₁² / Σ σ_k² of X − mean(X).

    Range [1/min(n−1, d), 1]; 1 = all spread lies on one direction (and, by convention, a set with
    no spread at all). Lower = less collapse. Reference: PCA explained-variance ratio; used for
    representation degeneration by Gao et al. (ICLR 2019).
    """
    s = _spectrum(X)
    if _no_spread(X, s):
        return 1.0
    return float(s.max() ** 2 / (s ** 2).sum())


def isotropy(X) -> float:
    """Partition-function isotropy min_c Z(c) / max_c Z(c), Z(c) = Σ_i exp(cᵀx_i), c over the unit
    eigenvectors of XᵀX with both signs (computed in log space: log Z = logsumexp(Xc)).

    The definition minimizes over every unit c; the eigenvectors are the standard sample of
    directions, and an eigenvector's sign is arbitrary, so both c and −c enter. When n < d, XᵀX
    has a null space: for c in it every cᵀx_i = 0 and Z(c) = n exactly, whatever basis is chosen.

    Range (0, 1]; 1 = isotropic (Z is the same in every principal direction, e.g. ±e_k).
    Depends on the vectors' scale, so the analyzer feeds L2-normed rows. Reference: Mu &
    Viswanath, "All-but-the-Top: Simple and Effective Postprocessing for Word Representations"
    (ICLR 2018).
    """
    X = _rows(X)
    _, _, vt = np.linalg.svd(X, full_matrices=False)  # rows = unit eigenvectors of XᵀX (thin)
    logits = X @ vt.T  # [n, r]  cᵀx_i for each eigenvector c
    logits = np.concatenate([logits, -logits], axis=1)  # and −c
    m = logits.max(0)
    logz = m + np.log(np.exp(logits - m).sum(0))
    if vt.shape[0] < X.shape[1]:  # the null space of XᵀX: Z = n
        logz = np.append(logz, np.log(len(X)))
    return float(np.exp(logz.min() - logz.max()))


def uniformity(X) -> float:
    """log mean_{i≠j} exp(−2‖x̂_i − x̂_j‖²) on L2-normed rows (‖x̂_i − x̂_j‖² = 2 − 2 cos).

    Range [−4·(1 + 1/(n−1)), 0] (the lower end for a regular simplex); 0 = all vectors identical,
    lower = spread more uniformly over the sphere. Lower = less collapse. Reference: Wang & Isola,
    "Understanding Contrastive Representation Learning through Alignment and Uniformity on the
    Hypersphere" (ICML 2020), t = 2.
    """
    Xn = l2_normalize(_rows(X))
    n = len(Xn)
    sq = np.clip(2.0 - 2.0 * (Xn @ Xn.T), 0.0, 4.0)  # [n, n] squared distances
    k = np.exp(-2.0 * sq)
    return float(np.log((k.sum() - np.trace(k)) / (n * (n - 1))))


# --------------------------------------------------------------------------- analyzers


def _pair_kernel(X, kernel) -> np.ndarray:
    """[n, n] kernel(cos) of the L2-normed rows."""
    Xn = l2_normalize(_rows(X))
    return kernel(Xn @ Xn.T)


PAIRWISE = {  # metric → (kernel of the cosine, reduction of the mean kernel over distinct pairs)
    "aniso_cos": (lambda cos: cos, lambda m: m),
    "uniformity": (lambda cos: np.exp(-2.0 * np.clip(2.0 - 2.0 * cos, 0.0, 4.0)), np.log),
}


def bootstrap_interval(metric: str, fn, X, estimate: float) -> bootstrap.Interval:
    """The 95 % interval of ``fn`` on set X over resampled rows (see the module docstring)."""
    X = np.asarray(X, dtype=np.float64)
    if metric in PAIRWISE:
        kernel, reduce = PAIRWISE[metric]
        K = _pair_kernel(X, kernel)

        def over_distinct_pairs(idx):
            distinct = idx[:, None] != idx[None, :]
            return float(reduce(K[np.ix_(idx, idx)][distinct].mean())) if distinct.any() else float("nan")

        return bootstrap.of_statistic(len(X), over_distinct_pairs)
    return bootstrap.shifted(bootstrap.of_statistic(len(X), lambda idx: fn(X[idx])), estimate)


def _measure(inputs, metric: str, fn, normalize: bool = False) -> Measurement:
    from threadpoolctl import threadpool_limits

    records, iv, headline = [], None, float("nan")
    head = inputs.geometry_headline  # (set, layer): the interest embeddings where there are history probes
    # These matrices are small (≤ a few thousand × d); a multi-threaded BLAS only adds wake-ups,
    # and on a shared machine its spinning threads waste more (benchmarks/README.md).
    with threadpool_limits(limits=1, user_api="blas"):
        for name, layer, X in inputs.embedding_sets():
            X = l2_normalize(X) if normalize else X
            records.append(Record(metric, fn(X), layer=layer, set=name))
            if (name, layer) == head:
                headline = records[-1].value
                iv = bootstrap_interval(metric, fn, X, headline)
    return Measurement(headline, tuple(records), interval=iv)


@register("aniso_cos", higher_is_better=False, needs=("capture",))
def aniso_cos_metric(inputs) -> Measurement:
    """Anisotropy: mean pairwise cosine over distinct pairs, (‖Σ x̂_i‖² − n) / (n(n−1)).

    Range [−1/(n−1), 1]; 1 = all vectors parallel. Per set (interest, items, marker per layer);
    headline = interest embeddings. Lower = less collapse. Reference: Ethayarajh (EMNLP 2019).
    """
    return _measure(inputs, "aniso_cos", aniso_cos)


@register("erank", higher_is_better=True, needs=("capture",))
def erank_metric(inputs) -> Measurement:
    """Effective rank exp(H(σ/‖σ‖₁)), σ = singular values of the centered set.

    Range [1, min(n, d)]. Per set; headline = interest embeddings. Higher = less collapse.
    Reference: Roy & Vetterli (EUSIPCO 2007).
    """
    return _measure(inputs, "erank", erank)


@register("top1_var", higher_is_better=False, needs=("capture",))
def top1_var_metric(inputs) -> Measurement:
    """Explained-variance share of the first principal component, σ₁² / Σσ² of the centered set.

    Range (0, 1]. Per set; headline = interest embeddings. Lower = less collapse.
    Reference: PCA; Gao et al., "Representation Degeneration Problem" (ICLR 2019).
    """
    return _measure(inputs, "top1_var", top1_var)


@register("isotropy", higher_is_better=True, needs=("capture",))
def isotropy_metric(inputs) -> Measurement:
    """Mu & Viswanath isotropy min_c Z(c) / max_c Z(c), Z(c) = Σ_i exp(cᵀx̂_i), c = ± the unit
    eigenvectors of X̂ᵀX̂, on L2-normed rows (the residual stream's norm grows by orders of magnitude with depth,
    which would drive Z to 0 for reasons unrelated to direction).

    Range (0, 1]. Per set; headline = interest embeddings. Higher = less collapse.
    Reference: Mu & Viswanath (ICLR 2018).
    """
    return _measure(inputs, "isotropy", isotropy, normalize=True)


@register("uniformity", higher_is_better=False, needs=("capture",))
def uniformity_metric(inputs) -> Measurement:
    """Uniformity log mean_{i≠j} exp(−2‖x̂_i − x̂_j‖²) on L2-normed rows.

    Range [−4(1 + 1/(n−1)), 0]; 0 = all identical. Per set; headline = interest embeddings.
    Lower = less collapse. Reference: Wang & Isola (ICML 2020).
    """
    return _measure(inputs, "uniformity", uniformity)
