"""A metric's response to a planted dose: slope, its interval, monotonicity, and the inverse map
from a metric difference to the dose that causes it. numpy only (no torch), so the study can read
a calibration without loading a model.

For one metric, the calibration measured y(α) at the doses α_0 < … < α_K (with the analyzer's
95 % interval, and its bootstrap replicates y_b(α) over the same probe resamples at every dose):

    slope      = Σ_k (a_k − ā)(y_k − ȳ) / Σ_k (a_k − ā)²        least squares over the doses
    slope_ci   = 95 % percentile interval of slope_b, slope_b the same fit on the replicates y_b(α)
                 (a paired bootstrap over probes: resample b uses the same probes at every dose)
    monotone   = the y_k never step against the overall direction (ties allowed) and y_K ≠ y_0
    direction  = "rise" | "fall" | "flat" (sign of y_K − y_0)
    expected   = the planted direction: the collapse direction of the metric, i.e. "fall" for a
                 metric whose higher value is better (erank, *_gain, fact_acc), else "rise"
    as_planted = slope has the expected sign, and its interval excludes 0 (monotone in the
                 expected direction, for a metric whose analyzer has no interval)

a_k is the *effective* dose: for the two embedding transforms, which saturate at α = 1 (a fraction
of "all" cannot exceed all), min(α, 1); doses whose effective dose repeats an earlier one are left
out of the fit, so a saturated point does not flatten the slope.

``dose_for(metric, delta, calibration)`` = |delta| / |slope|: the planted dose whose linear response
is a change of ``delta`` in ``metric`` — "a planted sink of α ≥ … would have moved sink_mass by the
study's detectable difference". None where the metric was not calibrated or does not move as planted.

calibration.json (``reports/calibration-*/calibration.json``, written by ``karma-probe calibrate``)::

    {"schema": "karma_probe.calibration/1",
     "source": {"run": RUN or null, "model": M, "condition": …, "step": …},
     "doses": [0, 0.25, 0.5, 1, 2],
     "probes": {"history": N, "text": n, "seed": 0, "max_len": T},
     "undosed": {metric: value of the plain capture + analyze},
     "families": {family: {
         "intervention": "what is planted", "scale": {what α = 1 is, e.g. the peak |h|},
         "effective_doses": [...], "dose0_exact": true (α = 0 equals "undosed" bit for bit),
         "seconds": s,
         "metrics": {metric: {"expected": "rise"|"fall", "values": [y per dose],
                              "intervals": [[low, high] | null per dose], "slope": s,
                              "slope_ci": [low, high] | null, "monotone": bool,
                              "direction": "rise"|"fall"|"flat", "as_planted": bool}}}},
     "created": …, "git_sha": …, "versions": {…}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from karma_probe.analyzers import bootstrap

SCHEMA = "karma_probe.calibration/1"


def slope(doses, values) -> float:
    """Least-squares slope of ``values`` on ``doses`` (NaN with fewer than two distinct doses)."""
    a, y = np.asarray(doses, dtype=np.float64), np.asarray(values, dtype=np.float64)
    da = a - a.mean()
    denom = float((da * da).sum())
    return float((da * (y - y.mean())).sum() / denom) if denom > 0 else float("nan")


def slope_replicates(doses, replicates) -> np.ndarray:
    """The slope of every bootstrap replicate: ``replicates`` (K doses, R) → (R,)."""
    a = np.asarray(doses, dtype=np.float64)
    Y = np.asarray(replicates, dtype=np.float64)  # (K, R)
    da = (a - a.mean())[:, None]
    return (da * (Y - Y.mean(0))).sum(0) / float((da * da).sum())


def direction(values) -> str:
    y = np.asarray(values, dtype=np.float64)
    return "rise" if y[-1] > y[0] else "fall" if y[-1] < y[0] else "flat"


def monotone(values) -> bool:
    """No step against the overall direction (ties allowed), and an overall change."""
    y = np.asarray(values, dtype=np.float64)
    steps = np.diff(y)
    if y[-1] > y[0]:
        return bool((steps >= 0).all())
    if y[-1] < y[0]:
        return bool((steps <= 0).all())
    return False


def expected_direction(higher_is_better: bool) -> str:
    """The planted collapse moves a metric the way its "worse" lies."""
    return "fall" if higher_is_better else "rise"


@dataclass(frozen=True)
class Response:
    """One metric's dose-response (the ``metrics`` entry of a family in calibration.json)."""

    expected: str
    values: tuple[float, ...]
    intervals: tuple[tuple[float, float] | None, ...]
    slope: float
    slope_ci: tuple[float, float] | None
    monotone: bool
    direction: str

    @property
    def as_planted(self) -> bool:
        sign = 1.0 if self.expected == "rise" else -1.0
        if not np.isfinite(self.slope) or sign * self.slope <= 0:
            return False
        if self.slope_ci is not None:
            return bool(sign * self.slope_ci[0] > 0 and sign * self.slope_ci[1] > 0)
        return self.monotone and self.direction == self.expected

    def to_json(self) -> dict:
        return {"expected": self.expected, "values": list(self.values),
                "intervals": [list(iv) if iv is not None else None for iv in self.intervals],
                "slope": self.slope, "slope_ci": list(self.slope_ci) if self.slope_ci is not None else None,
                "monotone": self.monotone, "direction": self.direction, "as_planted": self.as_planted}


def fit_indices(effective_doses) -> list[int]:
    """Indices of the doses that enter the fit: the first of each distinct effective dose."""
    seen, keep = set(), []
    for i, a in enumerate(effective_doses):
        if a not in seen:
            seen.add(a)
            keep.append(i)
    return keep


def response(effective_doses, values, *, higher_is_better: bool, intervals=None, replicates=None) -> Response:
    """The :class:`Response` of one metric measured at ``effective_doses`` (ascending).

    ``intervals``: per dose [low, high] or None; ``replicates``: per dose the analyzer's bootstrap
    replicates (same resample indices at every dose) or None — the slope interval needs them at
    every fitted dose.
    """
    keep = fit_indices(effective_doses)
    a = [effective_doses[i] for i in keep]
    y = [values[i] for i in keep]
    ci = None
    if replicates is not None and all(replicates[i] is not None for i in keep):
        reps = np.stack([np.asarray(replicates[i], dtype=np.float64) for i in keep])  # (K, R)
        iv = bootstrap.interval(slope_replicates(a, reps))
        ci = (iv.low, iv.high) if np.isfinite(iv.low) and np.isfinite(iv.high) else None
    ivs = tuple(tuple(float(v) for v in iv) if iv is not None else None for iv in (intervals or [None] * len(values)))
    return Response(expected_direction(higher_is_better), tuple(float(v) for v in values), ivs, slope(a, y), ci,
                    monotone(values), direction(values))


# --------------------------------------------------------------------------- reading a calibration


def load(calibration) -> dict:
    """A calibration as a dict: given as the dict itself, or as calibration.json / its directory."""
    if isinstance(calibration, dict):
        return calibration
    from karma_probe.errors import BadInput

    path = Path(calibration)
    if path.is_dir():
        path = path / "calibration.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: cannot read the calibration ({e})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise BadInput(f"{path}: not a calibration ({SCHEMA})")
    return data


def metric_response(metric: str, calibration) -> tuple[str, dict] | None:
    """(family, the metric's entry) in a calibration, or None when no family measured it."""
    for family, block in load(calibration).get("families", {}).items():
        entry = (block.get("metrics") or {}).get(metric)
        if entry is not None:
            return family, entry
    return None


def dose_for(metric: str, delta: float, calibration) -> float | None:
    """The planted dose whose linear response moves ``metric`` by |``delta``|: |delta| / |slope|.

    ``calibration``: calibration.json's dict, the file, or its directory. None where the metric was
    not calibrated or its response is not as planted (wrong sign, or an interval that holds 0): a
    dose cannot be read off a response the calibration did not see. The dose is in the family's
    own scale (calibration.json → families → intervention / scale).
    """
    found = metric_response(metric, calibration)
    if found is None:
        return None
    entry = found[1]
    s = entry.get("slope")
    if not entry.get("as_planted") or s is None or not np.isfinite(s) or s == 0:
        return None
    return abs(float(delta)) / abs(float(s))
