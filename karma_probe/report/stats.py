"""Confidence intervals for the study's numbers. numpy only (scipy for t and normal quantiles), never torch.

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

**Several claims at once** (:func:`holm_steps`): every interval carries the two-sided p-value of
"the estimate is 0" that its own construction inverts to (``Interval.p``: the t-test for a
t-interval, the bootstrap tail share for a percentile bootstrap, the normal approximation for
intervals combined in quadrature), so Holm's step-down can order the claims, and every interval
can be recomputed at another level (``level=`` everywhere, :func:`rescale` for combined ones).
:func:`detectable` is the smallest paired difference n seeds with their spread could detect.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from karma_probe.core.errors import BadInput

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
    level: float = LEVEL
    p: float | None = None  # two-sided p-value of "estimate = 0" by the same construction; None: unknown

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_json(self) -> dict:
        return {"estimate": self.estimate, "ci_low": self.low, "ci_high": self.high, "n": self.n,
                "method": self.method, "level": self.level, "p": self.p}

    def negated(self) -> "Interval":
        """The interval of ``-estimate`` (same level and p-value)."""
        return Interval(-self.estimate, -self.high, -self.low, self.n, self.method, self.level, self.p)


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
    # the percentile interval at level 1 - a excludes 0 once a / 2 is below the share of resamples
    # on the far side of 0, so the p-value it inverts to is twice the smaller tail share
    p = min(1.0, 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    return Interval(float(v.mean()), float(low), float(high), len(v), method, level, p)


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
    se = float(np.std(v, ddof=1)) / math.sqrt(len(v))
    half = t_quantile(len(v) - 1, level) * se
    return Interval(mean, mean - half, mean + half, len(v), f"t-interval over {len(v)} {unit}", level,
                    t_pvalue(mean, se, len(v) - 1))


def t_pvalue(mean: float, se: float, df: int) -> float:
    """Two-sided p-value of the one-sample t-test of "mean = 0": ``2 · P(T_df > |mean| / se)``."""
    from scipy.stats import t

    if se == 0:
        return 1.0 if mean == 0 else 0.0
    return float(2 * t.sf(abs(mean) / se, df))


def detectable(values: Sequence[float], level: float = LEVEL, power: float | None = None) -> float | None:
    """The smallest paired difference a study of these ``n`` per-seed differences could detect.

    ``power=None``: ``t(1 - α/2, n-1) · s / sqrt(n)`` (α = 1 - ``level``), the half-width of their
    t-interval: a mean difference at least this large, with the same spread, has a CI excluding 0.
    ``power=π`` (e.g. 0.8): ``(t(1 - α/2, n-1) + t(π, n-1)) · s / sqrt(n)``, the usual minimum
    detectable effect: a true difference this large is detected (CI excludes 0) in about a share π
    of repeated studies (central-t approximation; it ignores the far tail). s: the sample standard
    deviation of ``values``. None for fewer than two finite values.

    Three seeds with differences 1, 2, 3 (s = 1): 4.303 / sqrt(3) = 2.484 and (4.303 + 1.061) /
    sqrt(3) = 3.097.
    """
    from scipy.stats import t

    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if len(v) < 2:
        return None
    spread = float(np.std(v, ddof=1)) / math.sqrt(len(v))
    q = t_quantile(len(v) - 1, level) + (float(t.ppf(power, len(v) - 1)) if power is not None else 0.0)
    return q * spread


def detectable_from(ci: Interval, power: float | None = None) -> float:
    """:func:`detectable` for an interval that is not a t-interval over seeds (a bootstrap, intervals
    combined in quadrature): its half-width, and at power π that half-width times
    ``(z(1 - α/2) + z(π)) / z(1 - α/2)`` (normal quantiles, α = 1 - ``ci.level``)."""
    from scipy.stats import norm

    z = float(norm.ppf((1 + ci.level) / 2))
    return ci.half_width * (1.0 if power is None else (z + float(norm.ppf(power))) / z)


def normal_pvalue(ci: Interval) -> float:
    """Two-sided p-value of "estimate = 0" for an interval read as a normal one: the standard error
    is the distance from the estimate to the bound on zero's side over ``z(1 - α/2)``."""
    from scipy.stats import norm

    side = ci.estimate - ci.low if ci.estimate >= 0 else ci.high - ci.estimate
    if side <= 0:
        return 1.0 if ci.estimate == 0 else 0.0
    return float(2 * norm.sf(abs(ci.estimate) / (side / norm.ppf((1 + ci.level) / 2))))


def rescale(ci: Interval, level: float) -> Interval:
    """``ci`` at another ``level``, each side's distance from the estimate scaled by the ratio of normal
    quantiles ``z((1 + level) / 2) / z((1 + ci.level) / 2)``: the rule for intervals that are already
    normal approximations (combined in quadrature) or probe bootstraps known only at their bounds."""
    from scipy.stats import norm

    k = float(norm.ppf((1 + level) / 2) / norm.ppf((1 + ci.level) / 2))
    p = ci.p if ci.p is not None else normal_pvalue(ci)
    return Interval(ci.estimate, ci.estimate - k * (ci.estimate - ci.low), ci.estimate + k * (ci.high - ci.estimate),
                    ci.n, ci.method, level, p)


def holm_steps(p_values: Sequence[float | None], alpha: float = 1 - LEVEL) -> list[tuple[int, float]]:
    """Holm's step-down (Holm 1979) over one family of ``m`` hypotheses: per p-value (in the order
    given) its step ``i`` (1 = smallest p; None counts as p = 1, so untestable claims still count in
    ``m``; ties keep the given order) and its level ``α / (m - i + 1)``. Hypothesis ``i`` is rejected
    when every one before it was and its own p-value is below its level (:func:`holm_reject`); that
    controls the chance of any false rejection in the family at ``alpha``."""
    m = len(p_values)
    order = sorted(range(m), key=lambda j: 1.0 if p_values[j] is None else p_values[j])
    out: list[tuple[int, float]] = [(0, 0.0)] * m
    for i, j in enumerate(order, start=1):
        out[j] = (i, alpha / (m - i + 1))
    return out


def holm_reject(p_values: Sequence[float | None], alpha: float = 1 - LEVEL) -> list[bool]:
    """Holm's decisions for ``p_values`` (in the order given): step down while ``p < α / (m - i + 1)``."""
    steps = holm_steps(p_values, alpha)
    rejected = [False] * len(p_values)
    for j in sorted(range(len(p_values)), key=lambda j: steps[j][0]):
        p = p_values[j]
        if p is None or p >= steps[j][1]:
            break
        rejected[j] = True
    return rejected


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
    if len({i.level for i in intervals}) > 1:
        raise ValueError("mean_of_independent: intervals of different levels")
    low = m - math.sqrt(sum((i.estimate - i.low) ** 2 for i in intervals)) / n
    high = m + math.sqrt(sum((i.high - i.estimate) ** 2 for i in intervals)) / n
    out = Interval(m, low, high, min(i.n for i in intervals), method, intervals[0].level)
    return replace(out, p=normal_pvalue(out))


def combine_independent(a: Interval, b: Interval, method: str) -> Interval:
    """CI of ``a - b`` from two intervals estimated independently (e.g. per-run probe bootstraps).

    Each side's distance from the estimate adds in quadrature: low = d - sqrt((a.est - a.low)² +
    (b.high - b.est)²), high = d + sqrt((a.high - a.est)² + (b.est - b.low)²), d = a.est - b.est.
    Runs scored on the same probes are positively correlated, so this is wider than a paired CI.
    """
    if a.level != b.level:
        raise ValueError(f"combine_independent: levels {a.level} and {b.level} differ")
    d = a.estimate - b.estimate
    low = d - math.hypot(a.estimate - a.low, b.high - b.estimate)
    high = d + math.hypot(a.high - a.estimate, b.estimate - b.low)
    out = Interval(d, low, high, min(a.n, b.n), method, a.level)
    return replace(out, p=normal_pvalue(out))
