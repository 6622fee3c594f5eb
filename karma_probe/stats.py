"""Confidence intervals for the study's numbers. numpy only (scipy for one t quantile), never torch.

Retrieval metrics are means over test users of a per-user value computed from the 1-based rank
``r`` of the user's test target (``metrics.json`` ``ranks``)::

    HR@K   = mean 1[r <= K]
    NDCG@K = mean 1[r <= K] / log2(r + 1)       (one relevant item, so IDCG = 1)
    MRR    = mean 1 / r

so a CI over users is a bootstrap of that mean. Every bootstrap here is the **percentile method**:
draw ``resamples`` index vectors of ``n`` users with replacement (seeded, so a report is
reproducible), take the statistic on each, and report the (2.5 %, 97.5 %) percentiles.

**Paired**: the difference of two runs (or of a run and a baseline ranker) on the same users
resamples the *same* user indices for both — ``mean(a[idx] - b[idx])`` — so the user-to-user
spread that both share cancels. Two identical runs therefore get exactly [0, 0].

Across seeds, :func:`t_interval` is the Student-t interval ``mean ± t(0.975, n-1) · s / sqrt(n)``
of per-seed values (or per-seed paired differences).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from karma_probe.errors import BadInput

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
_CHUNK = 250  # resamples drawn at once: bounds memory at _CHUNK * n indices


@dataclass(frozen=True)
class Interval:
    """A point estimate with its ``level`` confidence interval [low, high]; ``n``: the units resampled."""

    estimate: float
    low: float
    high: float
    n: int
    method: str  # e.g. "paired bootstrap over 943 users"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_json(self) -> dict:
        return {"estimate": self.estimate, "ci_low": self.low, "ci_high": self.high, "n": self.n,
                "method": self.method}


# --------------------------------------------------------------------------- per-user values

_AT_K = re.compile(r"(hr|ndcg)@(\d+)")


def is_rank_metric(name: str) -> bool:
    """True for the metrics :func:`per_user` can compute from ranks (hr@K, ndcg@K, mrr)."""
    return name == "mrr" or _AT_K.fullmatch(name) is not None


def per_user(ranks: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    """The per-user values whose mean is retrieval metric ``name`` (formulas in the module doc)."""
    r = np.asarray(ranks, dtype=float)
    if r.ndim != 1 or (r.size and r.min() < 1):
        raise BadInput(f"ranks must be a flat list of 1-based ranks (>= 1), got shape {list(r.shape)}")
    if name == "mrr":
        return 1.0 / r
    m = _AT_K.fullmatch(name)
    if not m:
        raise BadInput(f"{name!r} is not a rank metric (hr@K, ndcg@K, mrr)")
    hit = (r <= int(m.group(2))).astype(float)
    return hit if m.group(1) == "hr" else hit / np.log2(r + 1)


# --------------------------------------------------------------------------- bootstrap

def bootstrap_mean(values: Sequence[float] | np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED,
                   level: float = LEVEL, unit: str = "users") -> Interval:
    """Percentile-bootstrap CI of ``mean(values)``: resample the ``n`` values with replacement."""
    v = _flat(values)
    return _bootstrap(v, resamples, seed, level, f"bootstrap over {len(v)} {unit}")


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                     resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL,
                     unit: str = "users") -> Interval:
    """Percentile-bootstrap CI of ``mean(a) - mean(b)`` with the same units resampled for both.

    ``a[i]`` and ``b[i]`` must belong to the same unit (user); lengths that differ are BadInput.
    """
    a, b = _flat(a), _flat(b)
    if len(a) != len(b):
        raise BadInput(f"paired bootstrap: {len(a)} vs {len(b)} {unit}; the two runs were not scored "
                       "on the same users")
    return _bootstrap(a - b, resamples, seed, level, f"paired bootstrap over {len(a)} {unit}")


def rank_metric_ci(ranks, name: str, **kw) -> Interval:
    """CI of retrieval metric ``name`` of one run from its per-user ``ranks``."""
    return bootstrap_mean(per_user(ranks, name), **kw)


def rank_metric_diff(ranks_a, ranks_b, name: str, **kw) -> Interval:
    """CI of ``name(a) - name(b)``, paired over users (run vs run, or run vs a baseline ranker)."""
    return paired_bootstrap(per_user(ranks_a, name), per_user(ranks_b, name), **kw)


def _bootstrap(v: np.ndarray, resamples: int, seed: int, level: float, method: str) -> Interval:
    if not len(v):
        raise BadInput("bootstrap: no values")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"level must be in (0, 1) and resamples >= 1, got {level}, {resamples}")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        k = min(_CHUNK, resamples - start)
        means[start:start + k] = v[rng.integers(0, len(v), size=(k, len(v)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(v.mean()), float(low), float(high), len(v), method)


def _flat(values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise BadInput(f"expected a flat list of numbers, got shape {list(v.shape)}")
    if not np.all(np.isfinite(v)):
        raise BadInput("bootstrap: values must be finite")
    return v


# --------------------------------------------------------------------------- across seeds

def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile ``t((1 + level) / 2, df)``, e.g. 4.303 for df = 2."""
    from scipy.stats import t  # scipy comes with scikit-learn; imported here to keep this module light

    return float(t.ppf((1 + level) / 2, df))


def t_interval(values: Sequence[float], level: float = LEVEL, unit: str = "seeds") -> Interval | None:
    """``mean ± t(level, n-1) · s / sqrt(n)`` over ``values`` (s: sample std); None for n < 2."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if len(v) < 2:
        return None
    mean = float(np.mean(v))
    half = t_quantile(len(v) - 1, level) * float(np.std(v, ddof=1)) / math.sqrt(len(v))
    return Interval(mean, mean - half, mean + half, len(v), f"t-interval over {len(v)} {unit}")


def mean_of_independent(intervals: Sequence[Interval], method: str) -> Interval:
    """CI of the mean of independent estimates, each with its own interval.

    Each side's distance from the estimate adds in quadrature and is divided by the count:
    low = m - sqrt(sum (e_i - low_i)²) / n, high = m + sqrt(sum (high_i - e_i)²) / n, m = mean e_i.
    The study uses it where seed-paired differences agree exactly, so that their t-interval has
    zero width and says nothing about noise: what is left is the sampling noise within each run.
    """
    if not intervals:
        raise ValueError("mean_of_independent: no intervals")
    n = len(intervals)
    m = sum(i.estimate for i in intervals) / n
    low = m - math.sqrt(sum((i.estimate - i.low) ** 2 for i in intervals)) / n
    high = m + math.sqrt(sum((i.high - i.estimate) ** 2 for i in intervals)) / n
    return Interval(m, low, high, min(i.n for i in intervals), method)


def combine_independent(a: Interval, b: Interval, method: str) -> Interval:
    """CI of ``a - b`` from two intervals estimated independently (e.g. per-run probe bootstraps).

    Each side's distance from the estimate adds in quadrature: low = d - sqrt((a.est - a.low)² +
    (b.high - b.est)²), high = d + sqrt((a.high - a.est)² + (b.est - b.low)²), d = a.est - b.est.
    Runs scored on the same probes are positively correlated, so this is wider than a paired CI.
    """
    d = a.estimate - b.estimate
    low = d - math.hypot(a.estimate - a.low, b.high - b.estimate)
    high = d + math.hypot(a.high - a.estimate, b.estimate - b.low)
    return Interval(d, low, high, min(a.n, b.n), method)
