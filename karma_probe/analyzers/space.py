"""The space the embedding metrics are measured in: the same width for trained and untouched runs.

A trained run's interest (and item) embedding is its head's output, L2-normed, of width e
(``TrainConfig.embed_dim``: 128 for SmolLM2, 64 for tiny). An untouched model has no head: its
"embedding" is the normalized marker hidden state of width d (576 for SmolLM2). Geometry metrics
(erank ≤ min(n, width), a 576-dimensional linear genre probe on 192 examples, ...) are not
comparable across widths, so an untouched (``base``) run is measured **through a random,
untrained head of the trained runs' width**:

    x ↦ normalize(P x),   P ∈ R^{e×d},  P_ij ~ N(0, 1/e) i.i.d., drawn by default_rng(PROJECTION_SEED)

which is what an interest head is at initialization (up to its bias): "the backbone before any
training" in the trained runs' space. Random Gaussian projections preserve cosines up to
O(1/√e) (Johnson–Lindenstrauss), so what the raw state holds survives. The width e is the
preset's ``embed_dim`` for the run's backbone (config.PRESETS); for a backbone no preset uses, the
width is unknown: the raw state is measured and ``analysis.json`` says ``"comparable": false``.

Where it applies: the captured interest and item embeddings and the fit split's embeddings
(RunInputs.interest / embedding_sets / fit_split). The marker hidden states are the backbone's own
space in every run and are never projected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROJECTION_SEED = 0


def trained_width(model: str) -> int | None:
    """``embed_dim`` of the preset that trains ``model`` (None when no preset does)."""
    from karma_probe.core.config import PRESETS

    widths = {p.embed_dim for p in PRESETS.values() if p.model == model}
    return widths.pop() if len(widths) == 1 else None


def projection(d: int, e: int, seed: int = PROJECTION_SEED) -> np.ndarray:
    """P [e, d] with i.i.d. N(0, 1/e) entries: the seeded random head."""
    return np.random.default_rng([seed, d, e]).normal(0.0, 1.0 / np.sqrt(e), size=(e, d))


@dataclass(frozen=True)
class Space:
    """How a run's embeddings are turned into the compared space (identity for trained runs)."""

    source: str  # "interest_head" | "random_projection" | "marker_state"
    width: int
    comparable: bool
    matrix: np.ndarray | None = None  # [e, d] for "random_projection"

    def apply(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if self.matrix is None:
            return X
        Z = X.astype(np.float64) @ self.matrix.T
        n = np.linalg.norm(Z, axis=1, keepdims=True)
        return (Z / np.where(n > 0, n, 1.0)).astype(np.float32)

    def to_json(self) -> dict:
        out = {"source": self.source, "width": self.width, "comparable": self.comparable}
        if self.matrix is not None:
            out["projection"] = {"from": int(self.matrix.shape[1]), "to": int(self.matrix.shape[0]),
                                 "seed": PROJECTION_SEED, "entries": "N(0, 1/to)", "then": "L2 normalize"}
        return out


def space_for(condition: str | None, model: str | None, d: int) -> Space:
    """The space of a run of ``condition`` on backbone ``model`` whose stored embeddings have width d."""
    from karma_probe.rundir.layout import UNTRAINED

    if condition not in UNTRAINED:
        return Space("interest_head", d, True)
    e = trained_width(model) if model else None
    if e is None:
        return Space("marker_state", d, False)
    return Space("random_projection", e, True, projection(d, e))
