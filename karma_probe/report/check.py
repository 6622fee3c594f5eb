"""The CI regression gate: compare a run's headline metrics with a baseline, or with another run.

Directions come from the run's ``analysis.json`` ``higher_is_better`` (declared by each analyzer
next to its formula), so this module keeps no table of its own — and imports no torch, so the
gate installs light.

Baseline file (``reports/baselines/*.json``)::

    {"schema": "karma_probe.baseline/1",
     "source": {"run": "runs/karma-tiny", "condition": "karma", "git_sha": "...", "created": "..."},
     "metrics": {
       "sink_mass": {"value": 0.31, "higher_is_better": false, "abs_tol": 0.02, "rel_tol": 0.05},
       "hr@10":     {"value": 0.05, "higher_is_better": true,  "abs_tol": 0.01}
     }}

Per metric: ``value`` (required) is what the baseline run measured; ``higher_is_better``
(optional) is checked against the run's own declaration, and must agree with it; ``abs_tol`` and
``rel_tol`` (optional, default 0) give the allowed slack, ``max(abs_tol, rel_tol * |value|)`` —
the looser of the two, as in ``math.isclose``. A metric **regresses** when it moves in its bad
direction by more than that slack; moving the good way never fails (it is reported as
"improved" once it exceeds the slack, a hint to refresh the baseline). ``source`` is provenance
only. A metric listed in the baseline but absent from the run, a run or baseline that does not
parse, or a direction nobody declares is bad input (exit 2), never a silent pass.

``--update-baseline`` rewrites the file from the run: values from the run's summary; the metric
list and tolerances of an existing baseline are kept (they were tuned by hand), new files get
every summary metric that has a direction with the default tolerances below.

**Tolerances from measured noise**: ``--update-baseline`` given several runs of one condition
(e.g. the three seeds of ``tiny-karma``) writes, per metric, ``value`` = the mean over the runs
and ``abs_tol = max(k · std, NOISE_ABS_FLOOR)``, ``rel_tol = NOISE_REL_FLOOR`` — so the slack is
``max(k · std, 0.001, 0.01 · |mean|)`` with std the sample std across the runs and k = 3 by default
(``--noise-k``). The floor keeps a metric that came out identical in every seed from a zero
tolerance that float noise would trip. ``noise: {"std", "n", "k", "values"}`` records what the
tolerance was derived from (provenance; the check reads only the tolerances).

**Metrics stuck at a bound are flagged**: a bounded metric (``bounds: [low, high]``, written from
``BOUNDS``: the catalogue's ranges of rates, accuracies and HR/NDCG/MRR) whose baseline value sits
on a bound is not silently passed. At its *worst* bound (0 for a higher-is-better accuracy, 1 for a lower-is-better
rate) it **cannot regress**: the check is reported as ``cannot regress`` (JUnit ``<skipped>``,
never a pass). At its *best* bound (0 for lower-is-better, 1 for higher-is-better) it can only get
worse and never shows an improvement: it is checked as usual and carries the flag. Either way the
flag is in the table, the JSON (``flag``) and the JUnit output.

Relational claims (``--against OTHER --expect "sink_mass<"``) compare two runs directly:
``RUN.sink_mass < OTHER.sink_mass``; operators ``<``, ``<=``, ``>``, ``>=``. Two values closer
than a tolerance ``t`` are **equal within tolerance**, reported as such: ``<=`` / ``>=`` pass,
``<`` / ``>`` fail (equal is not below). ``t`` is ``--tolerance`` when given, else the float noise
of computing one metric twice: ``max(REL_EPS · max(|a|, |b|), ABS_EPS)`` — two captures of one
model through different batchings differ in the last float32 digits (a ``sink_mass`` of 0.36 by
1.75e-10), which is no difference at all. (The metric catalogue records no per-metric noise floor
yet; a measured one, e.g. from ``calibrate``, would replace this default.)
"""

from __future__ import annotations

import math
import operator
import statistics
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from karma_probe.analyzers import catalogue
from karma_probe.analyzers.catalogue import format_delta, format_value
from karma_probe.core.errors import BadInput
from karma_probe.report.results import Run, distinct, group_runs
from karma_probe.rundir import atomic_path, now, read_json, write_json

BASELINE_SCHEMA = "karma_probe.baseline/1"
# starting slack for a new baseline; tune per metric in the file once real run-to-run noise is known
DEFAULT_ABS_TOL = 0.01
DEFAULT_REL_TOL = 0.05
# tolerances from the spread over seeds: max(NOISE_K * std, NOISE_ABS_FLOOR, NOISE_REL_FLOOR * |mean|)
NOISE_K = 3.0
NOISE_ABS_FLOOR = 0.001
NOISE_REL_FLOOR = 0.01
# metrics whose range is known (analyzers/catalogue.py); a baseline value on a bound is flagged (module doc)
BOUNDS = {f.name: f.bounds for f in catalogue.CATALOGUE if f.bounds}


# --------------------------------------------------------------------------- baselines

@dataclass(frozen=True)
class Expectation:
    metric: str
    value: float
    higher_is_better: bool | None = None  # None: take the run's declaration
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    bounds: tuple[float, float] | None = None  # the metric's range, where known
    noise: dict | None = None  # provenance of noise-derived tolerances: {"std", "n", "k", "values"}

    @property
    def slack(self) -> float:
        return max(self.abs_tol, self.rel_tol * abs(self.value))

    def at_bound(self, higher_is_better: bool) -> str:
        """"worst" / "best" when the baseline value sits on that end of ``bounds``, else ""."""
        bounds = self.bounds or BOUNDS.get(self.metric)
        if bounds is None:
            return ""
        low, high = bounds
        worst, best = (low, high) if higher_is_better else (high, low)
        eps = 1e-12 * max(1.0, abs(self.value))
        return "worst" if abs(self.value - worst) <= eps else "best" if abs(self.value - best) <= eps else ""


@dataclass(frozen=True)
class Baseline:
    path: Path
    metrics: tuple[Expectation, ...]
    source: dict


def load_baseline(path: str | Path) -> Baseline:
    path = Path(path)
    obj = read_json(path, "baseline")
    if not isinstance(obj, dict) or obj.get("schema") != BASELINE_SCHEMA:
        found = obj.get("schema") if isinstance(obj, dict) else type(obj).__name__
        raise BadInput(f"{path}: schema is {found!r}, expected {BASELINE_SCHEMA!r}")
    metrics = obj.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise BadInput(f"{path}: 'metrics' must be a non-empty object of metric -> {{value, ...}}")
    out = []
    for name, spec in metrics.items():
        where = f"{path}: metrics[{name!r}]"
        if not isinstance(spec, dict):
            raise BadInput(f"{where} must be an object with at least 'value'")
        unknown = set(spec) - {"value", "higher_is_better", "abs_tol", "rel_tol", "bounds", "noise"}
        if unknown:
            raise BadInput(f"{where}: unknown field(s) {sorted(unknown)} (typo?)")
        bounds = spec.get("bounds")
        if bounds is not None:
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise BadInput(f"{where}.bounds must be [low, high], got {bounds!r}")
            bounds = tuple(_finite(b, f"{where}.bounds") for b in bounds)
            if bounds[0] >= bounds[1]:
                raise BadInput(f"{where}.bounds must have low < high, got {list(bounds)}")
        noise = spec.get("noise")
        if noise is not None and not isinstance(noise, dict):
            raise BadInput(f"{where}.noise must be an object (std, n, k, values), got {noise!r}")
        value = _finite(spec.get("value"), f"{where}.value")
        hib = spec.get("higher_is_better")
        if hib is not None and not isinstance(hib, bool):
            raise BadInput(f"{where}.higher_is_better must be true or false, got {hib!r}")
        tols = {k: _finite(spec.get(k, 0.0), f"{where}.{k}") for k in ("abs_tol", "rel_tol")}
        if min(tols.values()) < 0:
            raise BadInput(f"{where}: tolerances must be >= 0, got {tols}")
        out.append(Expectation(metric=name, value=value, higher_is_better=hib, bounds=bounds, noise=noise, **tols))
    source = obj.get("source", {})
    return Baseline(path=path, metrics=tuple(out), source=source if isinstance(source, dict) else {})


def baseline_from_run(run: Run, previous: Baseline | None = None, metrics: Sequence[str] | None = None,
                      abs_tol: float | None = None, rel_tol: float | None = None) -> dict:
    """A baseline (as JSON-ready dict) holding ``run``'s current values.

    Metric list: ``metrics`` if given, else ``previous``'s, else every summary metric with a
    declared direction. Tolerances: the explicit arguments, else ``previous``'s, else defaults.
    """
    kept = {e.metric: e for e in previous.metrics} if previous else {}
    if metrics:
        names = list(metrics)
    elif kept:
        names = list(kept)
    else:
        names = [m for m in run.summary if m in run.analysis.higher_is_better]
    _require_metrics(run, names, "requested for the baseline")
    out = {}
    for name in names:
        value = run.summary[name]
        if not math.isfinite(value):
            raise BadInput(f"{run.path / 'analysis.json'}: {name} is {value}; a baseline needs a finite value")
        hib = run.analysis.higher_is_better.get(name)
        if hib is None:
            raise BadInput(f"{run.path / 'analysis.json'}: no higher_is_better for {name!r}; cannot gate it")
        old = kept.get(name)
        out[name] = {"value": value, "higher_is_better": hib,
                     "abs_tol": abs_tol if abs_tol is not None else (old.abs_tol if old else DEFAULT_ABS_TOL),
                     "rel_tol": rel_tol if rel_tol is not None else (old.rel_tol if old else DEFAULT_REL_TOL)}
        out[name] |= _bounds(name, old)
    return {"schema": BASELINE_SCHEMA, "source": _source(run), "metrics": out}


def baseline_from_runs(runs: Sequence[Run], previous: Baseline | None = None, metrics: Sequence[str] | None = None,
                       k: float = NOISE_K) -> dict:
    """A baseline from several runs of one condition (seeds), tolerances from their spread.

    Per metric: ``value`` = mean over the runs; ``abs_tol = max(k · std, NOISE_ABS_FLOOR)`` and
    ``rel_tol = NOISE_REL_FLOOR`` (std: sample std across runs), i.e. slack
    ``max(k · std, 0.001, 0.01 · |mean|)``. Metric list as in :func:`baseline_from_run`.
    """
    if len(runs) < 2:
        raise BadInput("tolerances from noise need at least two runs of the same condition (e.g. three seeds)")
    if not (k > 0 and math.isfinite(k)):
        raise BadInput(f"--noise-k must be a positive number, got {k}")
    groups = group_runs(distinct(runs))
    if len(groups) > 1:
        raise BadInput(f"the runs for one baseline must be seeds of one model, preset and condition; got "
                       f"{', '.join(groups)} ({', '.join(str(r.path) for r in runs)})")
    kept = {e.metric: e for e in previous.metrics} if previous else {}
    names = list(metrics) if metrics else list(kept) or [m for m in runs[0].summary if m in runs[0].analysis.higher_is_better]
    values, directions = {}, {}
    for name in names:
        for run in runs:
            _require_metrics(run, [name], "requested for the baseline")
            if not math.isfinite(run.summary[name]):
                raise BadInput(f"{run.path / 'analysis.json'}: {name} is {run.summary[name]}; a baseline needs finite values")
        directions[name] = runs[0].analysis.higher_is_better.get(name)
        if directions[name] is None:
            raise BadInput(f"{runs[0].path / 'analysis.json'}: no higher_is_better for {name!r}; cannot gate it")
        values[name] = [r.summary[name] for r in runs]
    source = _source(runs[0]) | {"run": [str(r.path) for r in runs]}
    return baseline_from_values(values, directions, source, kept, k)


def baseline_from_values(values: dict[str, list[float]], directions: dict[str, bool], source: dict,
                         kept: dict[str, Expectation] | None = None, k: float = NOISE_K) -> dict:
    """The noise-derived baseline of :func:`baseline_from_runs` from per-run values ``{metric: [v, ...]}``."""
    out = {}
    n = min(len(v) for v in values.values()) if values else 0
    for name, vals in values.items():
        if len(vals) < 2 or not all(math.isfinite(v) for v in vals):
            raise BadInput(f"{name}: a noise-derived tolerance needs >= 2 finite values, got {vals}")
        std = statistics.stdev(vals)
        out[name] = {"value": statistics.fmean(vals), "higher_is_better": directions[name],
                     "abs_tol": max(k * std, NOISE_ABS_FLOOR), "rel_tol": NOISE_REL_FLOOR,
                     **_bounds(name, (kept or {}).get(name)),
                     "noise": {"std": std, "n": len(vals), "k": k, "values": list(vals)}}
    source = source | {"tolerance": f"max({k:g} * std over {n} runs, {NOISE_ABS_FLOOR}, {NOISE_REL_FLOOR} * |mean|)"}
    return {"schema": BASELINE_SCHEMA, "source": source, "metrics": out}


def baseline_from_summary(path: str | Path, condition: str, previous: Baseline | None = None,
                          k: float = NOISE_K) -> dict:
    """The noise-derived baseline from a study's ``summary.json`` (its ``table[condition][m]["values"]``,
    one per seed), for when the run directories are gone. Metric list: ``previous``'s, else every
    metric with a direction in the summary."""
    obj = read_json(path, "study summary")
    table = (obj.get("table") or {}).get(condition) if isinstance(obj, dict) else None
    if not isinstance(table, dict):
        raise BadInput(f"{path}: no table for condition {condition!r}")
    kept = {e.metric: e for e in previous.metrics} if previous else {}
    directions = obj.get("higher_is_better") or {}
    names = list(kept) or [m for m in table if directions.get(m) is not None]
    missing = [m for m in names if m not in table or directions.get(m) is None]
    if missing:
        raise BadInput(f"{path}: no per-seed values or direction for {', '.join(missing)} ({condition})")
    values = {m: [v for v in table[m]["values"] if v is not None] for m in names}
    runs = [name for name, r in (obj.get("runs") or {}).items() if r.get("condition") == condition]
    source = {"run": runs, "condition": condition, "summary": str(path),
              "git_sha": (obj.get("provenance") or {}).get("git_sha", "unknown"), "created": now()}
    return baseline_from_values(values, {m: directions[m] for m in names}, source, kept, k)


def _bounds(name: str, old: Expectation | None) -> dict:
    bounds = (old.bounds if old else None) or BOUNDS.get(name)
    return {"bounds": list(bounds)} if bounds else {}


def _source(run: Run) -> dict:
    return {"run": str(run.path), "condition": run.condition,
            "git_sha": run.analysis.run.get("git_sha") or run.config.get("git_sha") or "unknown", "created": now()}


def write_baseline(path: str | Path, baseline: dict) -> None:
    write_json(path, baseline)


# --------------------------------------------------------------------------- outcomes

@dataclass(frozen=True)
class Outcome:
    """One checked claim. ``reference`` is the baseline value or the other run's value."""

    kind: str          # "baseline" | "against"
    metric: str
    claim: str         # human-readable, e.g. "lower is better" / "< runs/action"
    actual: float
    reference: float
    slack: float | None  # the baseline's allowed slack, or a relation's tolerance
    status: str        # ok | improved | equal within tolerance[: not <] | regressed | failed | not finite | cannot regress
    message: str
    flag: str = ""     # why this check says less than it seems (a baseline stuck at a bound); "" if nothing

    @property
    def passed(self) -> bool:
        return self.status in ("ok", "improved", EQUAL)

    @property
    def failed(self) -> bool:
        """A real failure; "cannot regress" is neither a pass nor a failure (JUnit: skipped)."""
        return not self.passed and self.status != CANNOT_REGRESS

    @property
    def delta(self) -> float:
        return self.actual - self.reference

    @property
    def name(self) -> str:
        return self.metric if self.kind == "baseline" else f"{self.metric} {self.claim}"


def check_baseline(run: Run, baseline: Baseline) -> list[Outcome]:
    """Each baseline metric: ``regressed`` if it moved the bad way by more than its slack."""
    _require_metrics(run, [e.metric for e in baseline.metrics], f"listed in baseline {baseline.path}")
    out = []
    for e in baseline.metrics:
        hib = _direction(run, e, baseline.path)
        actual = run.summary[e.metric]
        claim = "higher is better" if hib else "lower is better"
        if not math.isfinite(actual):
            out.append(Outcome("baseline", e.metric, claim, actual, e.value, e.slack, "not finite",
                               f"{e.metric} is {actual} in {run.name}"))
            continue
        worse_by = (e.value - actual) if hib else (actual - e.value)  # > 0: moved the bad way
        eps = 1e-12 * max(1.0, abs(e.value))  # "more than the tolerance", robust to float round-off
        bound = e.at_bound(hib)
        flag = _flag(e, bound)
        if bound == "worst" and worse_by <= e.slack + eps:
            out.append(Outcome("baseline", e.metric, claim, actual, e.value, e.slack, CANNOT_REGRESS,
                               f"{e.metric} = {format_value(actual)}: not checked, {flag}", flag))
            continue
        if worse_by > e.slack + eps:
            status = "regressed"
            msg = (f"{e.metric} regressed: {format_value(actual)} vs baseline {format_value(e.value)} "
                   f"({claim}; worse by {format_value(worse_by)}, allowed {format_value(e.slack)})")
        else:
            status = "improved" if -worse_by > e.slack + eps else "ok"
            msg = f"{e.metric} = {format_value(actual)} (baseline {format_value(e.value)}, {claim})"
        out.append(Outcome("baseline", e.metric, claim, actual, e.value, e.slack, status,
                           msg + (f"; flagged: {flag}" if flag else ""), flag))
    return out


CANNOT_REGRESS = "cannot regress"


def _flag(e: Expectation, bound: str) -> str:
    if not bound:
        return ""
    stuck = f" in all {e.noise['n']} baseline runs" if e.noise and e.noise.get("std") == 0 and e.noise.get("n") else ""
    if bound == "worst":
        return f"baseline {format_value(e.value)} is the worst value it can take{stuck}: it can never regress"
    return f"baseline {format_value(e.value)} is the best value it can take{stuck}: it can only get worse"


OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


# the default tolerance of a relational claim: float noise (module doc)
REL_EPS = 1e-6
ABS_EPS = 1e-12
EQUAL = "equal within tolerance"


@dataclass(frozen=True)
class Relation:
    metric: str
    op: str  # one of OPERATORS


def float_noise(a: float, b: float) -> float:
    """The default tolerance for comparing ``a`` with ``b``: ``max(REL_EPS · max(|a|, |b|), ABS_EPS)``."""
    return max(REL_EPS * max(abs(a), abs(b)), ABS_EPS)


def parse_expect(text: str) -> Relation:
    """``"sink_mass<"`` -> Relation("sink_mass", "<"): RUN's metric ``<`` OTHER's."""
    m = re.fullmatch(r"\s*([^<>=\s]+)\s*(<=|>=|<|>)\s*", text)
    if not m:
        raise BadInput(f"--expect {text!r}: write METRIC followed by one of {', '.join(OPERATORS)}, "
                       "e.g. \"sink_mass<\" (this run's sink_mass below the other's)")
    return Relation(metric=m.group(1), op=m.group(2))


def check_against(run: Run, other: Run, relations: Sequence[Relation],
                  tolerance: float | None = None) -> list[Outcome]:
    """Each relation ``RUN.metric OP OTHER.metric``; values within ``tolerance`` (default
    :func:`float_noise`) of each other are :data:`EQUAL`: a pass for ``<=`` / ``>=``, a failure for
    ``<`` / ``>``."""
    if tolerance is not None and not (tolerance >= 0 and math.isfinite(tolerance)):
        raise BadInput(f"--tolerance must be a finite number >= 0, got {tolerance}")
    names = [r.metric for r in relations]
    _require_metrics(run, names, "named by --expect")
    _require_metrics(other, names, "named by --expect")
    out = []
    for r in relations:
        a, b = run.summary[r.metric], other.summary[r.metric]
        claim = f"{r.op} {other.name}"
        if not (math.isfinite(a) and math.isfinite(b)):
            out.append(Outcome("against", r.metric, claim, a, b, None, "not finite",
                               f"{run.name} {r.metric} {format_value(a)} {r.op} {other.name} {format_value(b)}: not finite"))
            continue
        t = float_noise(a, b) if tolerance is None else tolerance
        if abs(a - b) <= t:
            status = EQUAL if r.op in ("<=", ">=") else f"{EQUAL}: not {r.op}"  # the latter fails
            said = f"{status} (|difference| {abs(a - b):.3g} <= {t:.3g})"
        else:
            status = "ok" if OPERATORS[r.op](a, b) else "failed"
            said = status
        msg = f"{run.name} {r.metric} {format_value(a)} {r.op} {other.name} {format_value(b)}: {said}"
        out.append(Outcome("against", r.metric, claim, a, b, t, status, msg))
    return out


def _require_metrics(run: Run, names: Sequence[str], why: str) -> None:
    missing = [m for m in names if m not in run.summary]
    if missing:
        raise BadInput(f"{run.path / 'analysis.json'}: summary has no {', '.join(map(repr, missing))} ({why}); "
                       f"it has: {', '.join(run.summary) or 'nothing'}")


def _direction(run: Run, e: Expectation, baseline_path: Path) -> bool:
    declared = run.analysis.higher_is_better.get(e.metric)
    if e.higher_is_better is not None and declared is not None and e.higher_is_better != declared:
        raise BadInput(f"{baseline_path}: {e.metric} has higher_is_better={str(e.higher_is_better).lower()} but "
                       f"{run.path / 'analysis.json'} declares {str(declared).lower()}; fix or refresh the baseline")
    hib = e.higher_is_better if e.higher_is_better is not None else declared
    if hib is None:
        raise BadInput(f"{baseline_path}: no direction for {e.metric!r} (add \"higher_is_better\" to the baseline)")
    return hib


def _finite(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BadInput(f"{where} must be a finite number, got {v!r}")
    return float(v)


# --------------------------------------------------------------------------- output

def format_table(outcomes: Sequence[Outcome]) -> str:
    """A fixed-width table for the terminal / CI log, with a one-line verdict at the end."""
    header = ("metric", "claim", "actual", "reference", "delta", "allowed", "status")
    rows = [(o.metric, o.claim, format_value(o.actual), format_value(o.reference), format_delta(o.delta),
             format_value(o.slack) if o.slack is not None else "-",
             (o.status.upper() if not o.passed else o.status) + (" (FLAGGED)" if o.flag else ""))
            for o in outcomes]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3, 4, 5}
    lines = ["  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in [header, *rows]]
    failed = [o.name for o in outcomes if o.failed]
    unchecked = [o for o in outcomes if o.status == CANNOT_REGRESS]
    verdict = (f"FAIL: {len(failed)} of {len(outcomes)} checks failed: {', '.join(failed)}" if failed
               else f"PASS: {len(outcomes) - len(unchecked)} checks"
               + (f" ({len(unchecked)} not checked: cannot regress)" if unchecked else ""))
    flags = [f"FLAGGED {o.name}: {o.flag}" for o in outcomes if o.flag]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:], *flags, verdict])


def junit_xml(outcomes: Sequence[Outcome], suite: str) -> ET.ElementTree:
    """JUnit XML: one testcase per checked claim, a <failure> for each that did not pass."""
    failures = sum(o.failed for o in outcomes)
    skipped = sum(o.status == CANNOT_REGRESS for o in outcomes)
    root = ET.Element("testsuites", name="karma-probe check", tests=str(len(outcomes)), failures=str(failures),
                      errors="0", time="0")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(outcomes)), failures=str(failures),
                       errors="0", skipped=str(skipped), time="0", timestamp=now())
    for o in outcomes:
        case = ET.SubElement(ts, "testcase", name=o.name, classname=f"karma_probe.report.check.{o.kind}", time="0")
        if o.flag:
            ET.SubElement(ET.SubElement(case, "properties"), "property", name="flag", value=o.flag)
        if o.status == CANNOT_REGRESS:
            ET.SubElement(case, "skipped", message=o.message)
        elif not o.passed:
            failure = ET.SubElement(case, "failure", message=o.message, type=o.status)
            failure.text = (f"metric: {o.metric}\nclaim: {o.claim}\nactual: {format_value(o.actual)}\n"
                            f"reference: {format_value(o.reference)}\ndelta: {format_delta(o.delta)}\n"
                            f"allowed: {format_value(o.slack) if o.slack is not None else '-'}\n")
        ET.SubElement(case, "system-out").text = o.message
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: str | Path, outcomes: Sequence[Outcome], suite: str) -> None:
    with atomic_path(path, ".xml") as tmp:
        junit_xml(outcomes, suite).write(tmp, encoding="utf-8", xml_declaration=True)


def write_json_report(path: str | Path, outcomes: Sequence[Outcome], context: dict) -> None:
    def row(o: Outcome) -> dict:
        # NaN is not JSON: a non-finite value is written as null, its status says why
        d = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in asdict(o).items()}
        return d | {"passed": o.passed, "flagged": bool(o.flag), "delta": o.delta if math.isfinite(o.delta) else None}

    write_json(path, context | {"passed": not any(o.failed for o in outcomes),
                                "flagged": [o.name for o in outcomes if o.flag],
                                "results": [row(o) for o in outcomes]})
