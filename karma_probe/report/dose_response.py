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

``dose_for(metric, delta, calibration)``: the smallest planted dose whose measured response reaches
a change of |delta| in ``metric``, read off the dose-response curve (linear between measured doses)
— "a planted sink of α ≥ … would have moved sink_mass by the study's detectable difference". None
where the metric was not calibrated, does not move as planted, or never moves that far.

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
    from karma_probe.core.errors import BadInput

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
    """The smallest planted dose whose measured response moves ``metric`` by |``delta``|.

    Read off the measured curve, like a lab assay's standard curve: with Δ_k = y(α_k) − y(0) taken
    in the expected direction, the first dose where Δ reaches |delta|, linearly interpolated from
    the dose before it. Responses saturate (SmolLM2's sink_mass gains most of its rise by α = ¼), so
    |delta| / |slope| of the fit over all doses would overstate the dose; the curve does not.
    ``calibration``: calibration.json's dict, the file, or its directory. None where the metric
    was not calibrated, does not move as planted (a dose cannot be read off a response the
    calibration did not see), or never moves that far within the calibrated doses. The dose is in
    the family's own scale (calibration.json → families → intervention / scale).
    """
    data = load(calibration)
    found = metric_response(metric, data)
    if found is None or not found[1].get("as_planted"):
        return None
    entry = found[1]
    sign = 1.0 if entry.get("expected") == "rise" else -1.0
    doses, values = data.get("doses") or [], entry.get("values") or []
    target = abs(float(delta))
    moved = [sign * (float(v) - float(values[0])) for v in values]
    for k in range(1, min(len(doses), len(moved))):
        if moved[k] >= target:
            lo = max(moved[k - 1], 0.0) if k > 1 else 0.0
            if moved[k] == lo:
                return float(doses[k])
            return float(doses[k - 1] + (target - lo) * (doses[k] - doses[k - 1]) / (moved[k] - lo))
    return None
