"""Seeded percentile bootstrap over probes: the uncertainty that goes with every headline.

One recipe for every metric and every run (issue 13): ``RESAMPLES`` = 1000 resamples of the n
probes (rows; for the knowledge metrics the facts or the passages) with replacement, drawn by ``numpy.random.default_rng(SEED)``, and the 95 %
percentile interval [q_2.5, q_97.5] of the metric over the resamples.

The resample indices depend only on (n, RESAMPLES, SEED), so two runs captured on the same probe
set (the capture's seeded draw: the same users in the same order) are resampled **identically**:
replicate b of run A and replicate b of run B are computed on the same users, and
``A_b − B_b`` is a paired bootstrap of the difference. ``analysis.json`` keeps the replicates
(``bootstrap.replicates``) for exactly that.

Known answers: identical probes give a zero-width interval; the interval of a mean contains the
mean (tests/test_analyzers_bootstrap.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
METHOD = {"resamples": RESAMPLES, "seed": SEED, "level": LEVEL, "method": "percentile",
          "unit": "the analyzer's items, resampled with replacement: history probes (rows) for attention, geometry "
                  "and decodability, facts for fact_acc, passages for lm_ppl; the same indices for every run with the same n"}


@dataclass(frozen=True)
class Interval:
    """A percentile interval and the replicates it was taken from (for paired differences)."""

    low: float
    high: float
    replicates: np.ndarray  # (RESAMPLES,)

    def as_list(self) -> list[float]:
        return [float(self.low), float(self.high)]

    def __sub__(self, other: "Interval") -> "Interval":
        """The paired difference (same resample indices): replicate by replicate."""
        return interval(self.replicates - other.replicates)


def indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) row indices drawn with replacement; the same for the same (n, resamples, seed)."""
    if n < 1:
        raise ValueError("nothing to resample: n = 0")
    return np.random.default_rng([seed, n]).integers(0, n, size=(resamples, n))


def interval(replicates, level: float = LEVEL) -> Interval:
    """The percentile interval of ``replicates`` (NaN replicates are dropped; all-NaN gives NaN)."""
    reps = np.asarray(replicates, dtype=np.float64)
    ok = reps[np.isfinite(reps)]
    if not len(ok):
        return Interval(float("nan"), float("nan"), reps)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(ok, [a, 1.0 - a])
    return Interval(float(lo), float(hi), reps)


def of_mean(values) -> Interval:
    """Interval of the mean over probes of ``values`` [n, ...] (extra axes are averaged too)."""
    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1).mean(1)  # (n,)
    return interval(v[indices(len(v))].mean(1))


def of_ratio(numerator, denominator) -> Interval:
    """Interval of Σ numerator / Σ denominator over probes (a pooled rate such as token accuracy)."""
    num, den = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    idx = indices(len(num))
    d = den[idx].sum(1)
    return interval(np.where(d > 0, num[idx].sum(1) / np.where(d > 0, d, 1.0), np.nan))


def of_statistic(n: int, statistic: Callable[[np.ndarray], float]) -> Interval:
    """Interval of ``statistic(idx)`` over the resamples, ``idx`` an (n,) index array into the probes."""
    return interval(np.array([statistic(idx) for idx in indices(n)]))


def shifted(iv: Interval, estimate: float) -> Interval:
    """Bias-shifted percentile interval: the replicates moved by (estimate − their mean).

    For statistics whose value depends on how many *distinct* rows a set holds (the effective rank
    of 64 vectors is capped by their count; a resample holds only ~63 % distinct rows), the
    replicates sit systematically below the estimate. Shifting them by that bias keeps their spread
    (the uncertainty) and drops the resampling artefact. Differences of shifted replicates of two
    runs equal the difference of the estimates plus a paired, centered spread.
    """
    reps = iv.replicates
    ok = reps[np.isfinite(reps)]
    if not len(ok):
        return iv
    return interval(reps - (ok.mean() - estimate))
