"""Embedding-geometry figures: is the space still spread out, or has it collapsed onto a few directions?

A collapsed set has a spectrum that drops off after one or two singular values (low ``erank``,
high ``top1_var``), pairwise cosines bunched near 1 (high ``aniso_cos``), and a PCA cloud that is
a line. Plain numpy (SVD), no torch: these take arrays from results.load_hidden.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from karma_probe.core.errors import BadInput
from karma_probe.report.figures.spec import FigureSpec, Series, series
from karma_probe.report.figures.style import Look

MAX_ROWS = 1000  # pairwise cosines are O(n^2): a fixed, seeded subsample keeps figures fast and stable
OTHER = "other"
ROLES = ("catalogue item", "target item", "interest")  # role_pca's labels, in drawing order


def singular_spectrum(embeddings: Mapping[str, np.ndarray], title: str = "singular value spectrum",
                      looks: Mapping[str, Look] | None = None) -> FigureSpec:
    """Normalized singular values σ_i / Σσ of each centered matrix, log scale (one line per set).

    Normalizing makes runs with different embedding norms comparable; it is the distribution
    whose entropy gives ``erank``. ``looks``: each set's run look (style.run_looks), by name.
    """
    lines = []
    for name, x in embeddings.items():
        sigma = np.linalg.svd(_centered(x, name), compute_uv=False)
        total = sigma.sum()
        if total > 0:
            lines.append(series(name, np.arange(1, len(sigma) + 1), sigma / total, look=(looks or {}).get(name)))
    return FigureSpec(kind="line", title=title, x_label="component", y_label="σ / Σσ",
                      series=tuple(lines), log_y=True, integer_x=True)


def cosine_histogram(embeddings: Mapping[str, np.ndarray], bins: int = 40,
                     title: str = "pairwise cosine similarity", looks: Mapping[str, Look] | None = None) -> FigureSpec:
    """Distribution of cosine similarity over distinct pairs, one histogram per set, shared bins;
    ``looks`` as in :func:`singular_spectrum`."""
    cosines = {name: _pair_cosines(x, name) for name, x in embeddings.items()}
    values = [c for c in cosines.values() if len(c)]
    if not values:
        return FigureSpec(kind="hist", title=title, x_label="cosine", y_label="fraction of pairs")
    edges = np.histogram_bin_edges(np.concatenate(values), bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    hists = []
    for name, c in cosines.items():
        if len(c):
            counts, _ = np.histogram(c, bins=edges)
            hists.append(series(name, centres, counts / len(c), look=(looks or {}).get(name)))
    return FigureSpec(kind="hist", title=title, x_label="cosine", y_label="fraction of pairs",
                      series=tuple(hists), bin_width=float(edges[1] - edges[0]),
                      meta={name: float(c.mean()) for name, c in cosines.items() if len(c)})


def pca_scatter(x: np.ndarray, labels: Sequence[str] | None = None, title: str = "PCA",
                max_groups: int = 10) -> FigureSpec:
    """Rows of ``x`` on their first two principal components, one colour per label.

    Beyond ``max_groups`` labels the rarest are pooled as "other" so the legend stays readable.
    """
    x = _centered(x, "x")
    if labels is not None and len(labels) != len(x):
        raise BadInput(f"pca_scatter: {len(labels)} labels for {len(x)} rows")
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:2].T if len(s) >= 2 else np.column_stack([x @ vt[:1].T, np.zeros(len(x))])  # (N, 2)
    var = s ** 2 / max((s ** 2).sum(), 1e-30)
    labels = list(labels) if labels is not None else ["all"] * len(x)
    keep = {name for name, _ in Counter(labels).most_common(max_groups)}
    grouped = np.array([name if name in keep else OTHER for name in labels])
    groups = [name for name, _ in Counter(grouped.tolist()).most_common()]
    points = tuple(Series(name=g, x=coords[grouped == g, 0], y=coords[grouped == g, 1]) for g in groups)
    return FigureSpec(kind="scatter", title=title, series=points,
                      x_label=f"PC1 ({var[0]:.0%} of variance)",
                      y_label=f"PC2 ({var[1]:.0%} of variance)" if len(var) > 1 else "PC2")


def role_pca(items: np.ndarray, interest: np.ndarray, targets: np.ndarray, title: str = "PCA") -> FigureSpec:
    """Item and interest embeddings on their shared first two principal components, coloured by
    role: "interest" (a probe's interest embedding), "target item" (the next item of some probe),
    "catalogue item" (every other item).

    The capture records no item genres (checkpoints.md), so role is the label every run has; it
    still shows the collapse that matters for retrieval: interests drifting away from the items
    they should land on, or everything squeezed onto one line.
    """
    items, interest = np.asarray(items), np.asarray(interest)
    targets = np.asarray(targets, dtype=np.int64)
    is_target = np.zeros(len(items), dtype=bool)
    is_target[targets[(targets >= 0) & (targets < len(items))]] = True
    labels = ["target item" if t else "catalogue item" for t in is_target] + ["interest"] * len(interest)
    spec = pca_scatter(np.concatenate([items, interest]), labels, title=title)
    # a fixed order, so each role keeps its colour from one run's panel to the next
    return replace(spec, series=tuple(sorted(spec.series, key=lambda s: ROLES.index(s.name))))


def _centered(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise BadInput(f"{name}: needs a [n >= 2, d] matrix, got shape {list(x.shape)}")
    return x - x.mean(axis=0)


def _pair_cosines(x: np.ndarray, name: str) -> np.ndarray:
    """Cosines of all distinct pairs (upper triangle) of at most MAX_ROWS rows."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise BadInput(f"{name}: needs a [n, d] matrix, got shape {list(x.shape)}")
    if len(x) > MAX_ROWS:
        x = x[np.sort(np.random.default_rng(0).choice(len(x), MAX_ROWS, replace=False))]
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T  # (n, n)
    return sims[np.triu_indices(len(x), k=1)]
