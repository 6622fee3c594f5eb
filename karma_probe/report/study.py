"""The study's numbers with their uncertainty: per-condition table, claims verdict, runs vs baselines.

Torch-free (results + stats), so the PDF report and the dashboard compute the same verdict as
``reproduce`` writes to ``summary.json``.

**Where a CI comes from** (95 %, :mod:`karma_probe.report.stats`):

- *several seeds*: the Student-t interval over seeds. For a condition's value: over the per-seed
  values. For a claim or a run-vs-baseline difference: over the per-seed **paired differences**
  (action-only seed s minus KARMA seed s; seeds pair because they share data order and init).
  With three seeds t(0.975, 2) = 4.30, so this is wide on purpose: seed-to-seed spread is the
  noise a reader would meet re-running the study. (A bootstrap over seeds × users would be
  narrower but treats three seeds as if they were the population.)
- *one seed*: retrieval metrics use the paired bootstrap over test users (metrics.json
  ``ranks``: the same users resampled for both runs); attention / geometry / decodability
  metrics use the two runs' probe bootstraps (analysis.json ``intervals``) combined as
  independent (:func:`stats.combine_independent`). The status then says "(one seed)".
- *seeds that agree exactly* (every paired difference the same, which happens with two or three
  seeds on a metric counted in whole users): the t-interval would have zero width, so the
  within-run intervals above are used instead, one per seed pair, combined
  (:func:`stats.mean_of_independent`); at trajectory checkpoints, which have no within-run
  interval, there is then no CI.
- neither: no CI, and the claim is never called "holds".

**Claims** are the paper's: action-only collapses relative to KARMA. ``effect`` is signed so
that positive means the claimed direction (``action - karma`` for "higher", ``karma - action``
for "lower"); a claim **holds** only when its whole CI is above zero, **does not hold** when it
is below zero, else it is **within noise**. Raw ``recon_token_acc`` / ``recon_exact`` are not
claims: action-only and gen never train the reconstruction adapter, so they "hold" by
construction. Decodability claims are on the ``*_gain`` metrics (the metric minus the same metric
on another user's embedding), so what the backbone knows about item-text format cancels.

**Holm's correction** (:func:`holm_correct`): seventeen claims at 95 % each would call about one
in twenty noise "holds". Each *family* of tests is corrected together by Holm's step-down, the
claim at step i of m judged by its CI at level 1 − 0.05 / (m − i + 1); every entry keeps its raw
CI and adds ``holm``. The families, one question each:

- *action-only vs KARMA* (:func:`verdict`): every claim of the paper;
- *action-only vs gen only*, *action-only vs rec only* (:func:`ablations`): each regularizer's claims;
- *condition C vs baseline ranker B* (:func:`vs_baselines`): the retrieval metrics, "does C beat B?";
- *condition C vs a reference figure* (:func:`vs_reference`): one test, so Holm changes nothing.

**Detection limit** (:func:`detection_limit`): per claim of a multi-seed study, the smallest paired
difference its seed spread could have detected, at 95 % and at 80 % power, and with a calibration
(:func:`read_calibration`) the planted dose that difference corresponds to; and the corrected test's
(:func:`corrected_detection_limit`), the half-width of the claim's Holm CI.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Callable, Sequence

from karma_probe.analyzers import catalogue
from karma_probe.report import stats
from karma_probe.report.results import Run, group_runs

# The paper's claims (metric, action-only is <higher|lower> than KARMA) and the retrieval metrics,
# in catalogue order: both are facts of analyzers/catalogue.py.
CLAIMS = catalogue.CLAIMS
RETRIEVAL = catalogue.RETRIEVAL
# Group names as shown; the references are named for what they are (results.group_runs): "step 0",
# the trained runs' model before its first step; "untouched", the backbone itself; "base", a reference
# model of unknown kind (a user's own model, a run made before references were named).
CONDITION_NAMES = {"step 0": "step 0", "untouched": "untouched", "base": "base", "action": "action-only",
                   "gen": "gen only", "rec": "rec only", "karma": "KARMA"}
BASELINES = ("random", "popularity", "markov")  # rankers in metrics.json "baselines"; random has no ranks
ONE_SEED = " (one seed)"
METHOD = ("95 % CIs. Several seeds: Student-t interval over seeds (claims and baseline gaps: over the "
               "per-seed paired differences). One seed: paired percentile bootstrap over test users "
               "(2000 resamples, seed 0) for retrieval; for probe metrics the two runs' bootstraps over "
               "probes (analysis.json intervals) combined as independent. Seeds whose paired differences "
               "agree exactly (a zero-width t-interval): those within-run intervals of every pair, combined. "
               "A claim holds only when its CI "
               "excludes zero on the claimed side. Holm-corrected: within each comparison (action-only vs "
               "KARMA, vs gen only, vs rec only; each condition vs each baseline ranker) the claims ordered "
               "by p-value, the one at step i of m judged by its CI at level 1 - 0.05/(m - i + 1), stopping at "
               "the first that is not significant. Raw recon_token_acc / recon_exact are not claims "
               "(action-only never trains the reconstruction adapter); decodability claims use *_gain.")


def trajectory_reference(runs: Sequence[Run]) -> tuple[Run | None, str]:
    """The reference a figure over training draws at step 0, and its name: the step-0 model where the
    study has one (it reads the runs' own inputs), else the first reference run, named for what it is
    (config.json ``reference``; "base" when it does not say)."""
    refs = [r for r in runs if r.condition == "base"]
    ref = next((r for r in refs if r.config.get("reference") == "step 0"), refs[0] if refs else None)
    return ref, (ref.config.get("reference") or "base") if ref else ""


def by_condition(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """The runs as groups of seeds: same model, preset and condition (results.group_runs), each
    named by its condition unless another group shares that condition."""
    return group_runs(runs)


# --------------------------------------------------------------------------- training regimes
# A regime is what the runs train: the top k decoder layers (config ``train_layers = k``) or every
# layer (0). Two regimes are two comparisons, never pooled (karma-probe study, the dashboard).

def regime_of(run: Run) -> int | None:
    """The run's ``train_layers`` (0: every layer), None when its config does not say."""
    train = run.config.get("train") if isinstance(run.config.get("train"), dict) else {}
    k = train.get("train_layers")
    return k if isinstance(k, int) and not isinstance(k, bool) else None


def regime_name(k: int) -> str:
    return "every layer" if k == 0 else f"top {k} layer{'s' if k != 1 else ''}"


def regime_slug(k: int) -> str:
    return "full" if k == 0 else f"top{k}"


def split(runs: Sequence[Run]) -> dict[int, list[Run]]:
    """``{train_layers: runs}`` in the order regimes first appear among the trained runs. A reference
    run (condition ``base``) joins the regime its config carries; one whose config names no regime,
    or a regime no trained run has, joins every regime. A trained run without ``train_layers`` is
    refused (BadInput): it cannot be placed."""
    from karma_probe.core.errors import BadInput

    trained = [r for r in runs if r.condition != "base"]
    if not trained:
        raise BadInput("no trained run among the runs given (only references)")
    out: dict[int, list[Run]] = {}
    for r in trained:
        k = regime_of(r)
        if k is None:
            raise BadInput(f"{r.path}: its config.json has no train.train_layers, so its regime is unknown")
        out.setdefault(k, []).append(r)
    for r in (r for r in runs if r.condition == "base"):
        k = regime_of(r)
        for regime in ([k] if k in out else list(out)):
            out[regime].append(r)
    return out


# --------------------------------------------------------------------------- per-condition table

def cell(runs: Sequence[Run], metric: str) -> dict:
    """One condition's ``metric``: ``mean``, ``std``, ``n``, ``values`` (per run), and the 95 % CI
    ``ci_low`` / ``ci_high`` / ``half_width`` with ``ci_method`` (None where there is none)."""
    values = [r.summary.get(metric) for r in runs]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    out = {"mean": statistics.fmean(finite) if finite else None,
           "std": (statistics.stdev(finite) if len(finite) > 1 else 0.0) if finite else None,
           "n": len(finite), "values": [v if v is not None and math.isfinite(v) else None for v in values]}
    ci = stats.t_interval(finite) if len(finite) > 1 else runs[0].interval(metric) if len(runs) == 1 and finite else None
    if ci is None:
        return out | {"ci_low": None, "ci_high": None, "half_width": None, "ci_method": None}
    if len(finite) == 1:  # one run: show the estimate its CI belongs to (retrieval: recomputed from the ranks)
        out["mean"] = ci.estimate
    return out | {"ci_low": ci.low, "ci_high": ci.high, "half_width": ci.half_width, "ci_method": ci.method}


def table(runs: Sequence[Run], metrics: Sequence[str]) -> dict[str, dict[str, dict]]:
    """``{condition: {metric: cell}}`` for every condition among ``runs``."""
    return {cond: {m: cell(rs, m) for m in metrics} for cond, rs in by_condition(runs).items()}


def mean_ci(c: dict) -> str:
    """A table cell as the README and the PDF print it: ``mean ± half-width`` (or the mean alone)."""
    from karma_probe.analyzers.catalogue import format_value

    if c.get("mean") is None:
        return "–"
    if c.get("half_width") is None:
        return format_value(c["mean"])
    return f"{format_value(c['mean'])} ± {format_value(c['half_width'])}"


def is_study(runs: Sequence[Run]) -> bool:
    """Several runs (seeds) of one condition: the report and the dashboard then speak per condition."""
    return any(len(rs) > 1 for rs in by_condition(runs).values())


def representatives(runs: Sequence[Run]) -> list[Run]:
    """The runs a per-run view shows: all of them, or in a study each condition's lowest seed, in
    the order the conditions first appear."""
    if not is_study(runs):
        return list(runs)
    return [min(rs, key=lambda r: (r.seed is None, r.seed or 0)) for rs in by_condition(runs).values()]


def condition_rows(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """The study's table as strings: the header (metric, better, one column per condition with its
    run count) and, per metric family (a row of its name alone), each summary metric's mean ± 95 %
    CI half-width per condition (:func:`table`)."""
    hib: dict = {}
    for run in reversed(runs):  # the first run's declaration wins
        hib.update(run.analysis.higher_is_better)
    groups = by_condition(runs)
    conditions = [c for c in CONDITION_NAMES if c in groups] + [c for c in groups if c not in CONDITION_NAMES]
    families = catalogue.by_family(m for r in runs for m in r.summary)
    cells = table(runs, [m for _, metrics in families for m in metrics])
    header = ["metric", "better"] + [f"{CONDITION_NAMES.get(c, c)} (n={len(groups[c])})" for c in conditions]
    rows = []
    for family, metrics in families:
        rows.append([family] + [""] * (1 + len(conditions)))
        for m in metrics:
            rows.append([m, {True: "higher", False: "lower"}.get(hib.get(m), "?")]
                        + [mean_ci(cells[c][m]) for c in conditions])
    return header, rows


# --------------------------------------------------------------------------- differences

def _paired_by_seed(a: Sequence[Run], b: Sequence[Run]) -> list[tuple[Run, Run]]:
    """Runs of two conditions paired by seed (by position where a run has no seed)."""
    def keyed(rs):
        return {(r.seed if r.seed is not None else f"#{i}"): r for i, r in enumerate(rs)}

    ka, kb = keyed(a), keyed(b)
    return [(ka[s], kb[s]) for s in ka if s in kb]


def paired_diffs(a: Sequence[Run], b: Sequence[Run], metric: str,
                 b_baseline: str | None = None) -> list[tuple[Run, Run, float]]:
    """``(run of a, its partner, a - b)`` for every seed pair with a finite ``metric`` on both
    sides (``b_baseline``: the partner is the run itself and b is its own baseline ranker)."""
    pairs = [(r, r) for r in a] if b_baseline is not None else _paired_by_seed(a, b)

    def value(run: Run, baseline: str | None) -> float:
        if baseline is None:
            return run.summary.get(metric, math.nan)
        return ((((run.metrics or {}).get("baselines") or {}).get(baseline) or {}).get("test") or {}).get(metric, math.nan)

    return [(x, y, d) for x, y in pairs if math.isfinite(d := value(x, None) - value(y, b_baseline))]


def difference(a: Sequence[Run], b: Sequence[Run], metric: str, b_baseline: str | None = None,
               level: float = stats.LEVEL) -> tuple[float | None, stats.Interval | None, int]:
    """``metric`` of runs ``a`` minus runs ``b`` (or minus ``a``'s own ``b_baseline`` ranker):
    the estimate, its CI at ``level`` (None where none can be had), and the number of seed pairs used."""
    kept = paired_diffs(a, b, metric, b_baseline)
    diffs = [d for _, _, d in kept]
    if not diffs:
        return None, None, 0
    if len(diffs) > 1:
        ci = across_seeds(diffs, "seeds (paired by seed)",
                          lambda: [_one_seed(x, y, metric, b_baseline) for x, y, _ in kept], level=level)
        return statistics.fmean(diffs), ci, len(diffs)
    x, y, _ = kept[0]
    ci = _one_seed(x, y, metric, b_baseline, level)
    return (ci.estimate if ci else diffs[0]), ci, 1


def seed_interval(values: Sequence[float], unit: str = "seeds", level: float = stats.LEVEL) -> stats.Interval | None:
    """:func:`stats.t_interval` over seeds, but None when the values agree exactly (to rounding): a
    zero-width interval from a zero sample spread (two or three seeds, a metric counted in whole
    users) would call any nonzero difference significant."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if len(v) > 1 and max(v) - min(v) <= 1e-9 * max(abs(x) for x in v):
        return None
    return stats.t_interval(v, level=level, unit=unit)


def across_seeds(values: Sequence[float], unit: str, within: Callable[[], list[stats.Interval | None]],
                 level: float = stats.LEVEL) -> stats.Interval | None:
    """The t-interval over several seeds' ``values`` at ``level``; where they agree exactly, the
    within-run intervals ``within()`` (one per seed or seed pair, at 95 %, computed only then)
    combined as independent and rescaled to ``level`` (:func:`stats.rescale`), or None when one of
    them is missing."""
    ci = seed_interval(values, unit=unit, level=level)
    if ci is not None or len(values) < 2:
        return ci
    parts = within()
    if not parts or not all(parts):
        return None
    ci = stats.mean_of_independent(parts, f"{len(parts)} {unit} agree exactly; their within-run intervals, combined")
    return ci if level == ci.level else stats.rescale(ci, level)


def _one_seed(x: Run, y: Run, metric: str, baseline: str | None, level: float = stats.LEVEL) -> stats.Interval | None:
    rx, ry = x.ranks("test"), y.ranks("test", baseline=baseline)
    if stats.is_rank_metric(metric) and rx is not None and ry is not None and len(rx) == len(ry):
        return stats.rank_metric_diff(rx, ry, metric, level=level)
    if baseline is not None:
        return None
    ix, iy = x.interval(metric), y.interval(metric)
    if ix is None or iy is None:
        return None
    ci = stats.combine_independent(ix, iy, "probe bootstraps of both runs, combined")
    return ci if level == ci.level else stats.rescale(ci, level)


def status(ci: stats.Interval | None, one_seed: bool) -> str:
    """"holds" (CI above 0), "does not hold" (below 0), "within noise" (contains 0), "no CI"."""
    word = "no CI" if ci is None else "holds" if ci.low > 0 else "does not hold" if ci.high < 0 else "within noise"
    return word + (ONE_SEED if one_seed else "")


# --------------------------------------------------------------------------- the claims

def verdict(runs: Sequence[Run], calibration: dict | str | Path | None = None) -> list[dict]:
    """Each claim "action-only is <higher|lower> than KARMA on M" with its effect, 95 % CI, its
    Holm-corrected decision and its detection limit.

    Entry keys: ``metric``, ``claim``, ``action``, ``karma`` (condition means), ``effect`` (signed:
    > 0 is the claimed direction), ``ci_low``, ``ci_high`` (the effect's raw 95 % CI; None without
    one), ``p`` (its two-sided p-value, :class:`stats.Interval`), ``holds`` (True only when
    ``ci_low > 0``), ``status``, ``basis`` (how the CI was obtained), ``seeds`` (seed pairs behind it);
    ``holm`` (:func:`holm_correct`: the family's ``m``, this claim's ``step``, ``alpha`` and ``level``,
    the corrected ``ci_low`` / ``ci_high``, ``holds`` and ``status``); ``detectable`` /
    ``detectable_80`` (:func:`detection_limit`; with ``calibration`` also ``detectable_dose`` /
    ``detectable_80_dose``), and ``holm["detectable"]`` (``holm["detectable_dose"]``) the corrected
    test's (:func:`corrected_detection_limit`). [] unless both conditions are among ``runs``.
    """
    return claims_against(runs, "karma", calibration)


def claims_against(runs: Sequence[Run], other: str, calibration: dict | str | Path | None = None) -> list[dict]:
    """:func:`verdict` with condition ``other`` in KARMA's place: "action-only is <higher|lower> than
    ``other``", the mean of ``other`` under the key ``other``; Holm's family is these claims
    ("action vs ``other``"). [] unless both conditions are among ``runs``."""
    groups = by_condition(runs)
    if "action" not in groups or other not in groups:
        return []
    dose = calibration_doses(calibration) if calibration is not None else None
    out, again = [], []
    for metric, expected in CLAIMS:
        a, k = cell(groups["action"], metric), cell(groups[other], metric)
        if a["mean"] is None or k["mean"] is None:
            continue
        diff, ci, seeds = difference(groups["action"], groups[other], metric)
        if diff is None:
            continue
        sign = 1 if expected == "higher" else -1
        ci = _signed(ci, sign)
        entry = {"metric": metric, "claim": f"action-only {expected} than {other}", "action": a["mean"],
                 other: k["mean"], "effect": sign * diff,
                 "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None, "p": ci.p if ci else None,
                 "holds": bool(ci and ci.low > 0), "status": status(ci, seeds == 1),
                 "basis": ci.method if ci else "no CI: no ranks, no probe intervals", "seeds": seeds}
        entry |= detection_limit(paired_diffs(groups["action"], groups[other], metric), ci, dose, metric)
        out.append(entry)
        again.append(lambda level, m=metric, sign=sign: _signed(difference(groups["action"], groups[other], m,
                                                                           level=level)[1], sign))
    holm_correct(out, again, f"action vs {other}")
    for e in out:
        e["holm"] |= corrected_detection_limit(e, dose)
    return out


def corrected_detection_limit(e: dict, dose: Callable[[str, float], float | None] | None = None) -> dict:
    """What the corrected test could see: ``detectable`` = the half-width of the claim's Holm CI (at
    its step's level; for a t-interval over seeds exactly t(1 − α_i/2, n−1)·s/√n, the smallest mean
    difference with this spread that the step would reject, given that every earlier step did), with
    ``dose`` also ``detectable_dose``. With three seeds and 17 claims it is 1.4–4.3× the raw
    :func:`detection_limit` (t with 2 degrees of freedom at 97.5–99.7 % vs 95 %, by step; the v3
    top-8 study). None with one seed pair or no corrected CI."""
    holm = e.get("holm") or {}
    low, high = holm.get("ci_low"), holm.get("ci_high")
    limit = (high - low) / 2 if low is not None and high is not None and (e.get("seeds") or 0) > 1 else None
    out = {"detectable": limit}
    if dose is not None:
        out["detectable_dose"] = dose(e["metric"], limit) if limit is not None else None
    return out


def holm_correct(entries: list[dict], at_level: Sequence[Callable[[float], stats.Interval | None]], family: str,
                 words: Callable[[stats.Interval | None, bool], str] | None = None) -> None:
    """Holm's step-down over one family of ``entries`` (each with its raw ``p``, ``seeds``), adding
    ``entry["holm"]`` in place.

    The entries are ordered by p-value (:func:`stats.holm_steps`, no CI counting as p = 1); the
    claim at step ``i`` of ``m`` gets the level ``1 - 0.05 / (m - i + 1)`` and its CI recomputed at
    that level by ``at_level[j](level)`` the way the raw one was (t-interval over seeds, bootstrap
    over users, or probe intervals combined and rescaled: :func:`difference`). A claim is
    **rejected** (its corrected CI excludes 0) only while every claim before it was: the first one
    that is not stops the step-down, and every later one stays "within noise" even where its own
    corrected CI would exclude 0. ``holm``: ``family``, ``m``, ``step``, ``alpha`` (α / (m − i + 1)),
    ``level``, ``ci_low`` / ``ci_high`` (corrected), ``holds``, ``status`` (``words``, by default
    :func:`status`; the same words as the raw one).
    """
    words = words or status
    steps = stats.holm_steps([e["p"] for e in entries])
    going = True
    for j in sorted(range(len(entries)), key=lambda j: steps[j][0]):
        e, (step, alpha) = entries[j], steps[j]
        ci = at_level[j](1 - alpha) if e["p"] is not None else None
        rejected = going and ci is not None and ci.excludes_zero()
        going = rejected
        word = words(ci, e["seeds"] == 1)
        if ci is not None and not rejected:  # retained: "within noise", whatever the bounds alone say
            word = "within noise" + (ONE_SEED if e["seeds"] == 1 else "")
        e["holm"] = {"family": family, "m": len(entries), "step": step, "alpha": alpha, "level": 1 - alpha,
                     "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None,
                     "holds": bool(rejected and ci.low > 0), "status": word}


def detection_limit(kept: Sequence[tuple[Run, Run, float]], ci: stats.Interval | None,
                    dose: Callable[[str, float], float | None] | None = None, metric: str = "") -> dict:
    """The smallest paired difference this claim's seeds could detect (issue 25), for a multi-seed
    claim: ``detectable`` = t(0.975, n−1)·s/√n and ``detectable_80`` = (t(0.975, n−1) + t(0.8, n−1))·s/√n
    over the n per-seed differences (:func:`stats.detectable`; s: their sample std). Where the seeds
    agree exactly (s = 0, the CI is the within-run fallback) the same from that CI's half-width with
    normal quantiles (:func:`stats.detectable_from`), and ``detectable_from`` says which. With one
    seed pair: None (no seed spread to speak of). With a calibration's ``dose`` (metric, difference →
    planted dose, :func:`calibration_doses`): ``detectable_dose`` (and ``detectable_80_dose``), the
    smallest planted dose the study would have seen; None where the calibration cannot say."""
    diffs = [d for _, _, d in kept]
    out: dict = {"detectable": None, "detectable_80": None, "detectable_from": None}
    if len(diffs) > 1 and seed_interval(diffs) is not None:
        out = {"detectable": stats.detectable(diffs), "detectable_80": stats.detectable(diffs, power=0.8),
               "detectable_from": f"seed spread of {len(diffs)} paired differences"}
    elif len(diffs) > 1 and ci is not None:
        out = {"detectable": stats.detectable_from(ci), "detectable_80": stats.detectable_from(ci, power=0.8),
               "detectable_from": "within-run intervals (the seeds agree exactly)"}
    if dose is not None:
        for key in ("detectable", "detectable_80"):
            out[f"{key}_dose"] = dose(metric, out[key]) if out[key] is not None else None
    return out


def calibration_doses(source: dict | str | Path) -> Callable[[str, float], float | None]:
    """``dose(metric, difference)`` → the planted dose a metric difference corresponds to. A
    ``karma-probe calibrate`` output (its calibration.json, or that file's directory) is read off its
    measured dose-response curve (dose_response.dose_for: responses saturate, so a straight slope would
    misstate the dose); a plain mapping of slopes (:func:`read_calibration`) as |difference| / |slope|."""
    from karma_probe.report.dose_response import SCHEMA, dose_for

    data = source
    if not isinstance(source, dict):
        path = Path(source) / "calibration.json" if Path(source).is_dir() else Path(source)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            from karma_probe.core.errors import BadInput

            raise BadInput(f"calibration {path}: cannot read it as JSON ({e})") from None
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        return lambda metric, delta: dose_for(metric, delta, data)
    slopes = read_calibration(data)
    return lambda metric, delta: abs(delta) / abs(slopes[metric]) if slopes.get(metric) else None


def read_calibration(source: dict | str | Path) -> dict[str, float]:
    """``{metric: slope per unit dose}`` from a calibration (a path to calibration.json, or its
    parsed content). Accepted: ``{metric: slope}``; ``{metric: {"slope": slope}}`` (a slope may itself
    be ``{"estimate": x, ...}``); and either nested under families or other keys at any depth (e.g.
    ``{"families": {"attention": {"metrics": {"sink_mass": {"slope": ...}}}}}``, the shape
    ``karma-probe calibrate`` writes per family and metric). Only catalogued metric names count;
    a file that is unreadable or names none is BadInput."""
    from karma_probe.core.errors import BadInput

    if not isinstance(source, dict):
        try:
            source = json.loads(Path(source).read_text())
        except (OSError, ValueError) as e:
            raise BadInput(f"calibration {source}: cannot read it as JSON ({e})") from None

    def number(v) -> float | None:
        if isinstance(v, dict):
            v = v.get("estimate", v.get("value"))
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    slopes: dict[str, float] = {}

    def walk(node) -> None:
        for key, value in (node.items() if isinstance(node, dict) else ()):
            if key in catalogue.FACTS and key not in slopes:
                slope = number(value.get("slope")) if isinstance(value, dict) else number(value)
                if slope is not None:
                    slopes[key] = slope
                    continue
            walk(value)

    walk(source)
    if not slopes:
        raise BadInput("calibration: no slope for any known metric (expected {metric: slope} or "
                       "{metric: {\"slope\": x}}, possibly nested by family)")
    return slopes


ABLATIONS = ("gen", "rec")  # one regularizer each: which of KARMA's two does what it does?


def ablations(runs: Sequence[Run], calibration: dict | str | Path | None = None) -> dict[str, list[dict]]:
    """Each one-regularizer condition (gen only, rec only) against action-only, claim by claim, as
    :func:`claims_against` scores it (effect > 0: the regularizer moves the metric the way the paper
    says KARMA does). ``{condition: [entry, ...]}`` for the conditions among ``runs``; set beside
    :func:`verdict` it says whether one regularizer alone explains KARMA's effect."""
    return {c: rows for c in ABLATIONS if (rows := claims_against(runs, c, calibration))}


def ablation_rows(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """Action-only against each regularized condition (gen only, rec only, KARMA) as one table of
    strings: per claim, action-only's mean, then per condition its mean, the signed effect with its
    95 % CI, the raw verdict and the Holm-corrected one (each comparison its own family). ([], []) without a one-regularizer condition beside action-only."""
    return _ablation_table(ablations(runs), verdict(runs))


def _ablation_table(per: dict[str, list[dict]], karma: list[dict], bold: bool = False) -> tuple[list[str], list[list[str]]]:
    from karma_probe.analyzers.catalogue import format_value

    if not per:
        return [], []
    per = {**per, "karma": karma}
    conditions = [c for c in (*ABLATIONS, "karma") if per.get(c)]
    header = ["metric", "action-only is", "action-only"]
    for c in conditions:
        name = CONDITION_NAMES[c]
        header += [name, f"{name}: effect [95 % CI]", f"{name}: verdict", f"{name}: Holm verdict"]
    by_metric = {c: {e["metric"]: e for e in per[c]} for c in conditions}
    rows = []
    for metric, expected in CLAIMS:
        entries = [by_metric[c].get(metric) for c in conditions]
        first = next((e for e in entries if e), None)
        if first is None:
            continue
        row = [metric, expected, format_value(first["action"])]
        for c, e in zip(conditions, entries):
            if e is None:
                row += ["–", "–", "–", "–"]
                continue
            ci = "" if e["ci_low"] is None else f" [{format_value(e['ci_low'])}, {format_value(e['ci_high'])}]"
            word = f"**{e['status']}**" if bold and e["holds"] else e["status"]
            holm = (e.get("holm") or {}).get("status", "–")
            row += [format_value(e[c]), format_value(e["effect"]) + ci, word,
                    f"**{holm}**" if bold and (e.get("holm") or {}).get("holds") else holm]
        rows.append(row)
    return header, rows


CLAIM_COLUMNS = ("metric", "action-only is", "action-only", "karma", "effect", "95 % CI", "verdict",
                 "Holm level", "Holm CI", "Holm verdict", "detectable (80 % power)", "Holm detectable",
                 "CI from")


def claim_rows(runs: Sequence[Run], claims: list[dict] | None = None) -> list[list[str]]:
    """The claims as table rows of strings (:data:`CLAIM_COLUMNS`), as the PDF and the dashboard show
    them; the numbers are :func:`verdict`'s (or ``claims``, its entries already computed), the same
    as summary.json's ``verdict``."""
    from karma_probe.analyzers.catalogue import format_value

    rows = []
    for e in verdict(runs) if claims is None else claims:
        holm = e["holm"]
        rows.append([e["metric"], _direction(e), format_value(e["action"]), format_value(e["karma"]),
                     format_value(e["effect"]), _ci_text(e["ci_low"], e["ci_high"]), e["status"],
                     f"{holm['level'] * 100:.2f} %", _ci_text(holm["ci_low"], holm["ci_high"]), holm["status"],
                     detectable_text(e), holm_detectable_text(e), e["basis"]])
    return rows


def _direction(e: dict) -> str:
    """"higher" / "lower": what the claim says action-only is."""
    return e["claim"].removeprefix("action-only ").rsplit(" than ", 1)[0]


def _ci_text(low: float | None, high: float | None) -> str:
    from karma_probe.analyzers.catalogue import format_value

    return "no CI" if low is None else f"[{format_value(low)}, {format_value(high)}]"


def detectable_text(e: dict) -> str:
    """A claim's detection limit as printed: "0.012 (0.015)" (95 %, and at 80 % power), with the
    planted dose where a calibration gave one ("; dose 0.25"); "–" without one."""
    from karma_probe.analyzers.catalogue import format_value

    if e.get("detectable") is None:
        return "–"
    text = f"{format_value(e['detectable'])} ({format_value(e['detectable_80'])})"
    if e.get("detectable_dose") is not None:
        text += f"; dose {format_value(e['detectable_dose'])} ({format_value(e['detectable_80_dose'])})"
    return text


def holm_detectable_text(e: dict) -> str:
    """The corrected test's detection limit as printed (:func:`corrected_detection_limit`): "0.21",
    with the planted dose where a calibration gave one ("0.21; dose 0.46"); "–" without one."""
    from karma_probe.analyzers.catalogue import format_value

    holm = e.get("holm") or {}
    if holm.get("detectable") is None:
        return "–"
    text = format_value(holm["detectable"])
    if holm.get("detectable_dose") is not None:
        text += f"; dose {format_value(holm['detectable_dose'])}"
    return text


def _signed(ci: stats.Interval | None, sign: int) -> stats.Interval | None:
    if ci is None or sign == 1:
        return ci
    return ci.negated()


# --------------------------------------------------------------------------- retrieval vs baselines

def gap_status(ci: stats.Interval | None, one_seed: bool) -> str:
    """A run-minus-null gap in words: "better" / "worse" (CI excludes 0), "within noise", "no CI"."""
    return status(ci, one_seed).replace("does not hold", "worse").replace("holds", "better")


def vs_baselines(runs: Sequence[Run], baselines: Sequence[str] = BASELINES) -> dict:
    """Each trained condition's test retrieval minus each baseline ranker's, with a 95 % CI.

    ``{condition: {baseline: {metric: {"run", "baseline", "diff", "ci_low", "ci_high", "p", "status",
    "basis", "seeds", "holm"}}}}``; ``status`` is "better" / "worse" (CI excludes 0) / "within noise" /
    "no CI", "(one seed)" appended for one seed. Baselines come from each run's metrics.json.
    Holm's family (:func:`holm_correct`): one condition against one baseline ranker over the
    retrieval metrics, the one question "does it beat that ranker?".
    """
    out: dict = {}
    for cond, rs in by_condition(runs).items():
        for name in baselines:
            have = [r for r in rs if ((r.metrics or {}).get("baselines") or {}).get(name)]
            if not have:
                continue
            family, again = {}, []
            for metric in RETRIEVAL:
                diff, ci, seeds = difference(have, [], metric, b_baseline=name)
                if diff is None:
                    continue
                base_values = [v for r in have if math.isfinite(v := r.metrics["baselines"][name].get("test", {})
                                                                .get(metric, math.nan))]
                word = gap_status(ci, seeds == 1)
                family[metric] = {
                    "run": cell(have, metric)["mean"], "baseline": statistics.fmean(base_values) if base_values else None,
                    "diff": diff, "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None,
                    "p": ci.p if ci else None, "status": word, "basis": ci.method if ci else "no CI: no per-user ranks",
                    "seeds": seeds}
                again.append(lambda level, m=metric: difference(have, [], m, b_baseline=name, level=level)[1])
            if family:
                holm_correct(list(family.values()), again, f"{cond} vs {name}", words=gap_status)
                out.setdefault(cond, {})[name] = family
    return out


# A published-protocol reference a reader compares against: a number measured elsewhere, so it has no
# per-user ranks and no CI of its own; the run's CI (over seeds, or over users for one seed) is the
# only uncertainty. MovieLens-100k, leave-one-out, full sort with nothing excluded = our test_all.
REFERENCES = ({"name": "sasrec", "label": "SASRec (RecBole)", "split": "test_all", "metric": "hr@10", "value": 0.136,
               "source": "RecBole's SASRec on MovieLens-100k, leave-one-out split, full sort without history "
                         "exclusion; a reference figure, not re-run here"},)


def vs_reference(runs: Sequence[Run], references: Sequence[dict] = REFERENCES) -> dict:
    """Each condition's ``split`` ``metric`` (from metrics.json) minus each fixed reference figure.

    ``{condition: {reference name: {"label", "source", "split", "metric", "reference", "run", "diff",
    "ci_low", "ci_high", "p", "status", "basis", "seeds", "holm"}}}``. Several seeds: the t-interval over the
    per-seed values minus the reference; one seed: the bootstrap over users of that split's ranks.
    ``status`` as :func:`vs_baselines`. Conditions whose metrics.json lacks the split are left out.
    Holm's family is the one comparison (m = 1), so the corrected entry equals the raw one.
    """
    out: dict = {}
    for cond, rs in by_condition(runs).items():
        for ref in references:
            split, metric, value = ref["split"], ref["metric"], float(ref["value"])
            have = [(r, v) for r in rs
                    if math.isfinite(v := (((r.metrics or {}).get(split) or {}).get(metric, math.nan)))]
            if not have:
                continue
            def over_users(run: Run, level: float = stats.LEVEL) -> stats.Interval | None:
                ranks = run.ranks(split)
                if ranks is None or not stats.is_rank_metric(metric):
                    return None  # the bootstrap of (per-user value - reference): its p-value is about the gap
                return stats.bootstrap_mean(stats.per_user(ranks, metric) - value, level=level)

            def gap(level: float = stats.LEVEL) -> stats.Interval | None:
                if len(have) > 1:
                    return across_seeds([v - value for _, v in have], "seeds", lambda: [over_users(r) for r, _ in have],
                                        level=level)
                return over_users(have[0][0], level)

            ci = gap()
            run_value = statistics.fmean(v for _, v in have) if len(have) > 1 else ci.estimate + value if ci else have[0][1]
            entry = {
                "label": ref["label"], "source": ref["source"], "split": split, "metric": metric,
                "reference": value, "run": run_value, "diff": run_value - value,
                "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None, "p": ci.p if ci else None,
                "status": gap_status(ci, len(have) == 1), "basis": ci.method if ci else "no CI: no per-user ranks",
                "seeds": len(have)}
            holm_correct([entry], [gap], f"{cond} vs {ref['name']}", words=gap_status)  # m = 1: as the raw one
            out.setdefault(cond, {})[ref["name"]] = entry
    return out


# --------------------------------------------------------------------------- wall times

STAGE_SOURCES = ("train: train_log.jsonl's last elapsed_s (the training loop); evaluate: metrics.json eval_s; "
                 "capture: the capture manifest's elapsed_s (model loading not included); analyze: analysis.json's "
                 "analyzer seconds, final and trajectory checkpoints; report: this invocation")


def stage_seconds(runs: Sequence[Run]) -> dict[str, float]:
    """``{"<stage> <run>": seconds}`` as each run directory recorded them, whichever process ran the
    stage and however often it was resumed: train = ``train_log.jsonl``'s last ``elapsed_s`` (the
    training loop; a resume continues the count from its checkpoint), evaluate = metrics.json
    ``eval_s``, capture = the manifest's ``elapsed_s`` (probes + embeddings, model loading not
    included), analyze = analysis.json's analyzer seconds (final + trajectory checkpoints). A
    stage a run did not record (an older file, a base run that never trained) is left out."""
    from karma_probe.core.errors import BadInput
    from karma_probe.rundir.capture import read_manifest

    def number(v) -> float | None:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    out: dict[str, float] = {}
    for r in runs:
        try:
            capture = sum(v for v in (read_manifest(r.capture_dir).get("elapsed_s") or {}).values()
                          if number(v) is not None)
        except BadInput:  # no capture (or of another version): nothing recorded
            capture = None
        recorded = {"train": number(next((row.get("elapsed_s") for row in reversed(r.train_log)
                                          if "elapsed_s" in row), None)),
                    "evaluate": number((r.metrics or {}).get("eval_s")),
                    "capture": capture or None, "analyze": r.analysis.seconds}
        out |= {f"{stage} {r.name}": round(v, 1) for stage, v in recorded.items() if v is not None}
    return out


NULL_COLUMNS = ("condition", "against", "metric", "run", "null", "run - null", "95 % CI", "verdict", "Holm verdict",
                "CI from")
NULL_METRICS = ("hr@10", "mrr")


def null_rows(runs: Sequence[Run]) -> list[list[str]]:
    """Each condition's retrieval beside its nulls as table rows of strings (:data:`NULL_COLUMNS`), as
    the PDF and the dashboard show them: the baseline rankers on the same users (test split,
    :func:`vs_baselines`) and the fixed reference figures (:func:`vs_reference`)."""
    from karma_probe.analyzers.catalogue import format_delta, format_value

    rows = []
    baselines, references = vs_baselines(runs), vs_reference(runs)
    for cond in by_condition(runs):
        entries = [(name, metric, e) for name, by_metric in (baselines.get(cond) or {}).items()
                   for metric, e in by_metric.items() if metric in NULL_METRICS]
        entries += [(f"{e['label']}, {e['split']}", e["metric"], e | {"baseline": e["reference"]})
                    for e in (references.get(cond) or {}).values()]
        for against, metric, e in entries:
            ci = "no CI" if e["ci_low"] is None else f"[{format_value(e['ci_low'])}, {format_value(e['ci_high'])}]"
            rows.append([CONDITION_NAMES.get(cond, cond), against, metric, format_value(e["run"]),
                         format_value(e["baseline"]), format_delta(e["diff"]), ci, e["status"],
                         (e.get("holm") or {}).get("status", "–"), e["basis"]])
    return rows


# --------------------------------------------------------------------------- over training

# Followed over the analyzed checkpoints (reproduce --trajectory): the attention and geometry
# claims, decodability and knowledge. Every checkpoint is measured on the same smaller probe set
# (analyze.TRAJECTORY_PROBES), so the points of one line compare with each other.
TRAJECTORY_METRICS = ("sink_mass", "sink_rate", "key_concentration", "aniso_cos", "erank",
                      "probe_decode_acc_gain", "recon_token_acc_gain", "fact_acc")


def trajectory(runs: Sequence[Run], metrics: Sequence[str] = TRAJECTORY_METRICS) -> dict:
    """Each condition's metrics at every analyzed checkpoint, and each claim's effect there.

    ``{"conditions": {condition: {metric: [{"step", "mean", "ci_low", "ci_high", "n"}]}},
    "claims": {metric: [{"step", "effect", "ci_low", "ci_high", "seeds"}]}}``. CIs are t-intervals
    over seeds (claims: over per-seed paired differences, signed so that > 0 is the claimed
    direction); None with one seed. Empty dicts when no run has a trajectory.
    """
    def at(run: Run, step: int, metric: str) -> float:
        return next((t["summary"].get(metric, math.nan) for t in run.analysis.trajectory if t["step"] == step), math.nan)

    groups = by_condition(runs)
    out: dict = {"conditions": {}, "claims": {}}
    for cond, rs in groups.items():
        steps = sorted({t["step"] for r in rs for t in r.analysis.trajectory})
        for m in metrics:
            rows = []
            for s in steps:
                vals = [v for r in rs if math.isfinite(v := at(r, s, m))]
                if vals:
                    ci = stats.t_interval(vals)
                    rows.append({"step": s, "mean": statistics.fmean(vals), "ci_low": ci.low if ci else None,
                                 "ci_high": ci.high if ci else None, "n": len(vals)})
            if rows:
                out["conditions"].setdefault(cond, {})[m] = rows
    if "action" in groups and "karma" in groups:
        pairs = _paired_by_seed(groups["action"], groups["karma"])
        expected = dict(CLAIMS)
        for m in (m for m in metrics if m in expected):
            sign = 1 if expected[m] == "higher" else -1
            steps = sorted({t["step"] for a, k in pairs for t in a.analysis.trajectory}
                           & {t["step"] for a, k in pairs for t in k.analysis.trajectory})
            rows = []
            for s in steps:
                diffs = [d for a, k in pairs if math.isfinite(d := sign * (at(a, s, m) - at(k, s, m)))]
                if diffs:
                    ci = seed_interval(diffs, unit="seeds (paired by seed)")
                    rows.append({"step": s, "effect": statistics.fmean(diffs), "ci_low": ci.low if ci else None,
                                 "ci_high": ci.high if ci else None, "seeds": len(diffs)})
            if rows:
                out["claims"][m] = rows
    return out


# --------------------------------------------------------------------------- README tables


def markdown(summary: dict, metrics: Sequence[str] | None = None) -> str:
    """summary.json's table (``mean ± CI half-width``) and verdict as Markdown, for the README.

    ``python -c "import json, karma_probe.report.study as s; print(s.markdown(json.load(open('reports/tiny-ml100k/summary.json'))))"``
    """
    from karma_probe.analyzers.catalogue import format_value

    table, hib = summary.get("table") or {}, summary.get("higher_is_better") or {}
    conditions = [c for c in CONDITION_NAMES if c in table] + [c for c in table if c not in CONDITION_NAMES]
    metrics = list(metrics or dict.fromkeys(m for c in conditions for m in table[c]))
    lines = ["| metric | better | " + " | ".join(CONDITION_NAMES.get(c, c) for c in conditions) + " |",
             "|---|---|" + "---|" * len(conditions)]
    for m in metrics:
        better = {True: "higher", False: "lower"}.get(hib.get(m), "?")
        lines.append(f"| `{m}` | {better} | " + " | ".join(mean_ci(table[c].get(m) or {}) for c in conditions) + " |")
    lines.append("")
    for e in summary.get("verdict") or []:
        ci = "no CI" if e.get("ci_low") is None else f"95 % CI [{format_value(e['ci_low'])}, {format_value(e['ci_high'])}]"
        holm = e.get("holm")
        if holm:  # the corrected decision first, the raw one beside it where they differ
            word = f"**{holm['status']}**" if holm["holds"] else holm["status"]
            word += " (Holm" + (f"; raw {e['status']})" if holm["status"] != e["status"] else ")")
        else:  # a summary.json from before the correction
            word = f"**{e['status']}**" if e.get("holds") else e["status"]
        lines.append(f"- `{e['metric']}`: {e['claim']} — {word} (effect {format_value(e['effect'])}, {ci}; "
                     f"action {format_value(e['action'])}, karma {format_value(e['karma'])})")
    return "\n".join(lines)


def markdown_verdict(summary: dict) -> str:
    """summary.json's ``verdict`` as a Markdown table for the README: per claim the effect, the raw
    95 % CI and verdict beside the Holm-corrected CI (at its level) and verdict, and the detection
    limit at the study's number of seeds (95 %, and at 80 % power in brackets; with a calibration
    the planted dose it corresponds to), then the corrected test's. Bold: holds after correction.
    "" without claims."""
    from karma_probe.analyzers.catalogue import format_value

    entries = summary.get("verdict") or []
    if not entries:
        return ""
    n = "/".join(str(x) for x in sorted({e["seeds"] for e in entries if e.get("seeds")})) or "?"
    lines = [f"| claim | effect | raw 95 % CI | raw | Holm level | Holm CI | Holm | detectable at n = {n} (80 % power) | at the Holm level |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        holm = e.get("holm") or {}
        word = holm.get("status", "–")
        level = f"{holm['level'] * 100:.2f} %" if holm else "–"
        lines.append(f"| `{e['metric']}` {_direction(e)} | {format_value(e['effect'])} | "
                     f"{_ci_text(e.get('ci_low'), e.get('ci_high'))} | {e['status']} | {level} | "
                     f"{_ci_text(holm.get('ci_low'), holm.get('ci_high'))} | "
                     f"{f'**{word}**' if holm.get('holds') else word} | {detectable_text(e)} | {holm_detectable_text(e)} |")
    return "\n".join(lines)


def markdown_retrieval(summary: dict, metric: str = "hr@10") -> str:
    """Each condition's test ``metric`` beside its nulls (summary.json ``retrieval_vs_baselines`` and
    ``retrieval_vs_reference``) as a Markdown table for the README: the run (mean ± CI half-width),
    then per null "run − null [95 % CI] verdict", with "(Holm: ...)" where the corrected verdict
    differs; the header gives each null's value."""
    from karma_probe.analyzers.catalogue import format_delta, format_value

    table = summary.get("table") or {}
    base = summary.get("retrieval_vs_baselines") or {}
    ref = summary.get("retrieval_vs_reference") or {}
    conditions = [c for c in CONDITION_NAMES if c in base or c in ref]
    # (header, {condition: entry}, show the run's own value) per null: the baseline rankers (on the
    # test split, whose run value is the second column), then the fixed reference figures (on their split)
    columns = []
    for name in dict.fromkeys(n for c in conditions for n in base.get(c, {})):
        entries = {c: base[c][name][metric] for c in conditions if metric in base.get(c, {}).get(name, {})}
        if entries:
            first = next(iter(entries.values()))
            columns.append((f"{name} {format_value(first['baseline'])}", entries, False))
    for name in dict.fromkeys(n for c in conditions for n in ref.get(c, {})):
        entries = {c: ref[c][name] for c in conditions if name in ref.get(c, {})}
        first = next(iter(entries.values()))
        columns.append((f"{first['label']} {format_value(first['reference'])} ({first['split']} {first['metric']})",
                        entries, True))

    def gap(e: dict | None, show_run: bool) -> str:
        if not e:
            return "–"
        ci = "" if e.get("ci_low") is None else f" [{format_value(e['ci_low'])}, {format_value(e['ci_high'])}]"
        holm = (e.get("holm") or {}).get("status")
        corrected = f" (Holm: {holm})" if holm and holm != e["status"] else ""  # said only where it differs
        return (f"{format_value(e['run'])}: " if show_run else "") + f"{format_delta(e['diff'])}{ci} {e['status']}{corrected}"

    lines = [f"| condition | test {metric} | " + " | ".join(h for h, _, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for c in conditions:
        cells = [mean_ci((table.get(c) or {}).get(metric) or {})]
        cells += [gap(entries.get(c), show_run) for _, entries, show_run in columns]
        lines.append(f"| {CONDITION_NAMES.get(c, c)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_ablations(summary: dict) -> str:
    """summary.json's ``ablations`` beside its ``verdict`` as a Markdown table: each claim against gen
    only, rec only and KARMA (effect > 0: the paper's direction; bold: the CI excludes 0 that way).
    "" when the study has no one-regularizer condition."""
    header, rows = _ablation_table(summary.get("ablations") or {}, summary.get("verdict") or [], bold=True)
    if not rows:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| `" + row[0] + "` | " + " | ".join(row[1:]) + " |" for row in rows]
    return "\n".join(lines)


def markdown_trajectory(summary: dict) -> str:
    """Each claim's effect (action-only − KARMA, signed: > 0 is the claimed direction) at every analyzed
    checkpoint, with its 95 % CI over seeds, as a Markdown table: is the collapse there early, late, never?"""
    from karma_probe.analyzers.catalogue import format_delta, format_value

    claims = (summary.get("trajectory") or {}).get("claims") or {}
    steps = sorted({row["step"] for rows in claims.values() for row in rows})
    if not steps:
        return ""
    lines = ["| claim (effect > 0: the paper's direction) | " + " | ".join(f"step {s}" for s in steps) + " |",
             "|---|" + "---|" * len(steps)]
    expected = dict(CLAIMS)
    for metric, rows in claims.items():
        at = {row["step"]: row for row in rows}
        cells = []
        for s in steps:
            row = at.get(s)
            if row is None:
                cells.append("–")
            elif row.get("ci_low") is None:
                cells.append(format_delta(row["effect"]))
            else:
                mark = "**" if row["ci_low"] > 0 else ""
                cells.append(f"{mark}{format_delta(row['effect'])}{mark} [{format_value(row['ci_low'])}, "
                             f"{format_value(row['ci_high'])}]")
        lines.append(f"| `{metric}` action-only {expected.get(metric, '?')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_wall_times(summary: dict) -> str:
    """Per condition, each stage's mean seconds over its runs (summary.json ``wall_time_s``)."""
    stages = (summary.get("wall_time_s") or {}).get("stages") or {}
    runs = summary.get("runs") or {}
    per: dict[str, dict[str, list[float]]] = {}
    for key, seconds in stages.items():
        stage, _, name = key.partition(" ")
        if name in runs:
            per.setdefault(runs[name]["condition"], {}).setdefault(stage, []).append(seconds)
    if not per:
        return ""
    order = ("train", "evaluate", "capture", "analyze")
    lines = ["| condition | runs | " + " | ".join(f"{s} (mean s)" for s in order) + " |", "|---|---|" + "---|" * len(order)]
    for cond in [c for c in CONDITION_NAMES if c in per] + [c for c in per if c not in CONDITION_NAMES]:
        n = max(len(v) for v in per[cond].values())
        cells = [f"{statistics.fmean(per[cond][s]):,.0f}" if s in per[cond] else "–" for s in order]
        lines.append(f"| {CONDITION_NAMES.get(cond, cond)} | {n} | " + " | ".join(cells) + " |")
    total = (summary.get("wall_time_s") or {}).get("total")
    if total is not None:
        lines += ["", f"All stages together: {total:,.0f} s ({total / 3600:.1f} h) of recorded time."]
    return "\n".join(lines)


def summary_markdown(summary: dict) -> str:
    """summary.md: the study in Markdown, every number from summary.json (what the README quotes)."""
    runs = summary.get("runs") or {}
    missing = {c: [s for s in summary.get("planned_seeds") or () if s not in have]
               for c, have in (summary.get("seeds_by_condition") or {}).items()}
    missing = "; ".join(f"{c} seed {', '.join(map(str, m))}" for c, m in missing.items() if m)
    parts = [f"# Study: preset {summary.get('preset')}, {len(runs)} runs, seeds {summary.get('seeds')}"
             + (f" (planned, not in this report yet: {missing})" if missing else ""),
             "", f"Written by `karma-probe reproduce` from summary.json ({(summary.get('provenance') or {}).get('created', '?')}, "
             f"git {str((summary.get('provenance') or {}).get('git_sha', '?'))[:10]}). Uncertainty: {summary.get('uncertainty', '')}",
             "", "## Every condition: mean ± 95 % CI half-width over seeds", "", markdown(summary)]
    if claims := markdown_verdict(summary):
        parts += ["", "## The claims: raw and Holm-corrected, with each one's detection limit", "",
                  "Holm's step-down over the claims of action-only vs KARMA (one family; bold: holds after the "
                  "correction). Detectable: the smallest paired difference the seed spread could detect, "
                  "t(0.975, n-1)·s/√n, and at 80 % power (t(0.975, n-1) + t(0.8, n-1))·s/√n; Holm: the same at the "
                  "claim's corrected level (its Holm CI's half-width), what the corrected verdict could see.", "", claims]
    parts += ["", "## Retrieval beside its nulls (test split; SASRec on test_all)", "", markdown_retrieval(summary)]
    if abl := markdown_ablations(summary):
        parts += ["", "## Each regularizer alone: action-only against gen only, rec only and KARMA", "",
                  "effect > 0: the regularized run sits where the paper says KARMA does; bold: the 95 % CI "
                  "excludes 0 that way (Holm: after the correction over that comparison's claims).", "", abl]
    if traj := markdown_trajectory(summary):
        parts += ["", "## The claims over training (bold: the CI excludes 0 in the paper's direction)", "", traj]
    if times := markdown_wall_times(summary):
        parts += ["", "## Wall time per stage, as each run directory recorded it", "", times,
                  "", f"Recorded as: {(summary.get('wall_time_s') or {}).get('recorded_as', '')}"]
    parts += ["", "## Runs", "", "| run | condition | steps | config hash |", "|---|---|---|---|"]
    parts += [f"| {name} | {r.get('condition')} | {r.get('steps')} | `{r.get('config_hash')}` |" for name, r in runs.items()]
    return "\n".join(parts) + "\n"
