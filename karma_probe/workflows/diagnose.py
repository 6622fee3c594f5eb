"""Did my fine-tune collapse compared with its base? Capture, analyze and compare your own checkpoints.

    BASE_DIR, TUNED_DIR ...  ──capture (one run each, condition "model")──> OUT/runs/<name>/
                             ──analyze──> analysis.json  ──compare──> OUT/summary.json, OUT/report.pdf

Every model is a local causal-LM directory (any architecture transformers loads); none of them
needs a dataset, a retriever head or this project's training. Each is captured as loaded
(``capture.run.create_base_run``) on the same probes: the general passages, the user's prompts
(``--probes-file``, the headline set) and, with ``--dataset``, history prompts; then analyzed
(every metric that needs no retriever head; the others are listed as absent with the reason).

**Adapters.** A TUNED argument that is a PEFT adapter directory (it holds ``adapter_config.json``)
stands for BASE_DIR with that adapter merged in: ``diagnose BASE LORA_DIR``. ``--adapter A1 A2 ...``
gives one adapter per TUNED_DIR, in order (``-`` for none), merged into that tuned model.

**Verdict per metric**, for each tuned model against the base: the difference ``tuned − base`` of
the headline value and its 95 % interval, "differs" when the interval excludes 0 (then "better" or
"worse" by the metric's declared direction), else "within noise"; "no CI" where neither run has
an interval. The interval is the **paired** percentile bootstrap over probes when both runs were
captured on the same probe texts: analysis.json keeps each run's bootstrap replicates, drawn with
the same resample indices for the same probe count (analyzers/bootstrap.py), so replicate b of the
tuned run minus replicate b of the base is the difference on the same resampled probes. Otherwise
it is :func:`karma_probe.report.study.difference` (the two runs' intervals combined as independent). The
verdicts are **Holm-corrected** over the metrics of each comparison (study.holm_correct: each
interval recomputed at its adjusted level); the raw 95 % verdict is kept beside it.

**Resumable** like ``reproduce``: a run whose capture holds the same probes, dtype and adapter is
not captured again, an analysis newer than its capture is kept, so an interrupted ``diagnose``
started again continues where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from karma_probe.core.errors import BadInput
from karma_probe.model.backbones import ADAPTER_CONFIG
from karma_probe.report import stats
from karma_probe.rundir import RunPaths

SCHEMA = "karma_probe.diagnosis/1"
NO_ADAPTER = "-"
CORRECTION = ("Holm's step-down over the metrics of each tuned-vs-base comparison: a metric 'differs' only when "
              "its interval at the Holm-adjusted level excludes 0 (the raw 95 % verdict is kept beside it)")
METHOD = ("tuned − base of each headline value. Paired percentile bootstrap over probes (1000 resamples, the same "
          "indices for both runs: analysis.json bootstrap replicates) when both were captured on the same probe "
          "texts; otherwise the two runs' probe intervals combined as independent (study.difference). "
          "'differs' when the 95 % interval excludes 0, else 'within noise'.")


@dataclass(frozen=True)
class Model:
    """One model to diagnose: a causal-LM directory, optionally with a PEFT adapter merged in."""

    path: str
    adapter: str | None = None
    name: str = ""  # its run directory's name under OUT/runs

    @property
    def label(self) -> str:
        return Path(self.path).name + (f"+{Path(self.adapter).name}" if self.adapter else "")


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def plan_models(base: str, tuned: Sequence[str], adapters: Sequence[str] | None = None) -> list[Model]:
    """[base, tuned...] as :class:`Model` s with unique run names (the adapter rule in the module doc)."""
    if not tuned:
        raise BadInput("give BASE_DIR and at least one TUNED_DIR (a model directory or a PEFT adapter directory)")
    if adapters and len(adapters) != len(tuned):
        raise BadInput(f"--adapter takes one adapter per TUNED_DIR, in order ({len(tuned)}; '{NO_ADAPTER}' for none), "
                       f"got {len(adapters)}")
    for path in [base, *tuned]:
        if not Path(path).is_dir():
            raise BadInput(f"{path}: not a directory (a local model or PEFT adapter directory)")
    if is_adapter(base):
        raise BadInput(f"{base}: is a PEFT adapter; BASE_DIR must be the model it adapts (give the adapter as TUNED_DIR)")
    models = [Model(base)]
    for i, t in enumerate(tuned):
        adapter = adapters[i] if adapters and adapters[i] != NO_ADAPTER else None
        if is_adapter(t):
            if adapter is not None:
                raise BadInput(f"{t}: is itself an adapter (applied to BASE_DIR); its --adapter must be '{NO_ADAPTER}'")
            models.append(Model(base, adapter=t))
        else:
            models.append(Model(t, adapter=adapter))
    for m in models:
        if not (Path(m.path) / "config.json").is_file():
            raise BadInput(f"{m.path}: not a model directory (no config.json)")
        if m.adapter is not None and not is_adapter(m.adapter):
            raise BadInput(f"{m.adapter}: not a PEFT adapter directory (no {ADAPTER_CONFIG})")
    named, seen = [], {}
    for m in models:
        seen[m.label] = seen.get(m.label, 0) + 1
        named.append(Model(m.path, m.adapter, m.label if seen[m.label] == 1 else f"{m.label}-{seen[m.label]}"))
    if len({(m.path, m.adapter) for m in named}) < len(named):
        raise BadInput("the same model (and adapter) is given twice")
    return named


# --------------------------------------------------------------------------- the stages


def diagnose(models: Sequence[Model], out: str | Path, opts, *, dataset: str | None = None,
             max_items: int | None = None, junit: str | Path | None = None, progress: bool = True,
             threads: int | None = None) -> dict:
    """Capture and analyze each of ``models`` (the first is the base) under ``out/runs``, compare
    each tuned model with the base, write ``out/summary.json`` and ``out/report.pdf`` (and the
    JUnit XML ``junit``); return the summary."""
    from karma_probe.capture.probes import DEFAULT_MAX_ITEMS
    from karma_probe.core.device import resolve
    from karma_probe.rundir import check_writable

    out = Path(out)
    resolve(opts.device, opts.dtype)  # an unavailable device: exit 2 before any model loads
    check_writable(out, directory=True)
    t0 = time.perf_counter()
    dirs = [out / "runs" / m.name for m in models]
    stages = _bar(2 * len(models) + 1, progress)
    try:
        for m, d in zip(models, dirs):
            stages.set_postfix_str(f"capture {m.name}")
            _capture(m, d, opts, dataset, max_items or DEFAULT_MAX_ITEMS)
            stages.update(1)
            stages.set_postfix_str(f"analyze {m.name}")
            _analyze(d, opts, threads)
            stages.update(1)
        stages.set_postfix_str("report")
        summary = write_outputs(models, dirs, out, junit=junit)
        stages.update(1)
    finally:
        stages.close()
    summary["wall_time_s"] = round(time.perf_counter() - t0, 1)
    from karma_probe.rundir import write_json

    write_json(out / "summary.json", summary)
    return summary


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="diagnose", unit="stage", disable=not enabled)


def _capture(model: Model, run_dir: Path, opts, dataset: str | None, max_items: int) -> None:
    """Capture ``model`` into ``run_dir`` unless a capture of the same probes, dtype and adapter is there."""
    from karma_probe.capture.run import create_base_run

    if _captured(model, run_dir, opts, dataset):
        return
    create_base_run(model.path, run_dir, opts, dataset=dataset, max_items=max_items, adapter=model.adapter)


def _captured(model: Model, run_dir: Path, opts, dataset: str | None) -> bool:
    """Whether ``run_dir`` already holds this model's capture on these probes (what resuming may keep)."""
    from karma_probe.capture.probes import read_probes_file
    from karma_probe.rundir import read_config, read_json

    paths = RunPaths(run_dir)
    if not paths.manifest.is_file():
        return False
    train = (read_config(run_dir) or {}).get("train") or {}
    manifest = read_json(paths.manifest, "capture manifest")
    probes = manifest.get("probes") or {}
    user = [p.text for p in read_probes_file(opts.probes_file)] if opts.probes_file else []
    return (train.get("model") == str(Path(model.path).resolve())
            and train.get("adapter") == (str(Path(model.adapter).resolve()) if model.adapter else None)
            and probes.get("dataset") == dataset and probes.get("max_len") == opts.max_len
            and ((probes.get("user") or {}).get("texts") or []) == user
            and (manifest.get("placement") or {}).get("dtype") == opts.dtype)


def _analyze(run_dir: Path, opts, threads: int | None) -> None:
    from karma_probe.analyzers.run import analyze_run
    from karma_probe.workflows.reproduce import _fresh

    paths = RunPaths(run_dir)
    if not _fresh(paths.analysis, paths.manifest):
        analyze_run(run_dir, device=opts.device, dtype=opts.dtype, threads=threads)


# --------------------------------------------------------------------------- the comparison


def compare(base, tuned) -> list[dict]:
    """One verdict per metric that both runs (``results.Run``) measured: ``tuned − base`` with its
    raw 95 % interval and p-value, then Holm's step-down over the metrics of this comparison
    (study.holm_correct: each CI recomputed at its adjusted level the way the raw one was).
    ``verdict`` (corrected) differs / within noise / no CI, ``raw_verdict`` the uncorrected word,
    ``direction`` better / worse (when the corrected verdict differs)."""
    from karma_probe.report import study

    raw_b, raw_t = _raw(base), _raw(tuned)
    paired = _same_probes(base, tuned)
    rows, again = [], []
    for metric, hib in _directions(base, tuned).items():
        b, t = base.summary.get(metric), tuned.summary.get(metric)
        if b is None or t is None or not (math.isfinite(b) and math.isfinite(t)):
            continue
        reps = _paired_replicates(raw_t, raw_b, metric) if paired else None
        if reps is not None:
            at = (lambda level, d=reps: _percentile(d, level))
            basis = "paired bootstrap over the same probes (replicates of both runs)"
        else:
            at = (lambda level, m=metric: study.difference([tuned], [base], m, level=level)[1])
        ci = at(stats.LEVEL)
        if reps is None:
            basis = ci.method if ci is not None else "no CI: neither paired replicates nor both runs' intervals"
        rows.append({"metric": metric, "higher_is_better": hib, "base": b, "tuned": t, "difference": t - b,
                     "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None,
                     "raw_verdict": _word(ci), "p": ci.p if ci else None, "seeds": None, "basis": basis})
        again.append(at)
    study.holm_correct(rows, again, family=f"{tuned.name} vs {base.name}", words=lambda ci, _one: _word(ci))
    for r in rows:
        r["verdict"] = r["holm"]["status"]
        r["direction"] = (("better" if (r["difference"] > 0) == r["higher_is_better"] else "worse")
                          if r["verdict"] == "differs" else None)
    return rows


def _word(ci) -> str:
    return "no CI" if ci is None else "differs" if ci.excludes_zero() else "within noise"


def _directions(base, tuned) -> dict[str, bool]:
    """Metrics with a declared direction, in the catalogue's order."""
    from karma_probe.analyzers.catalogue import METRIC_NAMES

    hib = {**tuned.analysis.higher_is_better, **base.analysis.higher_is_better}
    known = [m for m in METRIC_NAMES if m in hib] + sorted(m for m in hib if m not in METRIC_NAMES)
    return {m: hib[m] for m in known if isinstance(hib[m], bool)}


def _raw(run) -> dict:
    from karma_probe.rundir import read_json

    return read_json(RunPaths(run.path).analysis, "analysis file")


def _same_probes(a, b) -> bool:
    """Both runs captured on the same probe texts, set by set (so their bootstrap resamples pair up)."""
    from karma_probe.rundir import PROBE_SETS, read_json

    def texts(run):
        probes = read_json(RunPaths(run.path).manifest, "capture manifest").get("probes") or {}
        return {s: (probes.get(s) or {}).get("texts") for s in PROBE_SETS}

    try:
        return texts(a) == texts(b) and a.analysis.headline_set == b.analysis.headline_set
    except BadInput:
        return False


def _paired_replicates(raw_t: dict, raw_b: dict, metric: str):
    """The replicate-by-replicate difference tuned − base (the same resample indices), or None
    without replicates."""
    import numpy as np

    rt, rb = (raw.get("bootstrap", {}).get(metric) for raw in (raw_t, raw_b))
    if not rt or not rb or len(rt) != len(rb):
        return None
    f = lambda v: np.array([np.nan if x is None else x for x in v], dtype=np.float64)  # noqa: E731
    d = f(rt) - f(rb)
    d = d[np.isfinite(d)]
    return d if len(d) else None


def _percentile(d, level: float):
    """The percentile interval of the replicate differences ``d`` at ``level``, with the p-value it
    inverts to (twice the smaller tail share, as stats' bootstrap); None when not finite."""
    import numpy as np

    from karma_probe.analyzers.bootstrap import interval

    iv = interval(d, level)
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return None
    p = min(1.0, 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
    return stats.Interval(float(np.mean(d)), float(iv.low), float(iv.high), len(d), "paired bootstrap over probes",
                          level, p)


def absent(run) -> dict[str, str]:
    """The metrics ``analyze`` could not measure for this run, with the reason (analysis.json ``absent``)."""
    return dict(_raw(run).get("absent") or {})


# --------------------------------------------------------------------------- outputs


def write_outputs(models: Sequence[Model], dirs: Sequence[Path], out: Path, junit: str | Path | None = None) -> dict:
    """summary.json's content, report.pdf (with the diagnosis page first) and the JUnit XML."""
    from karma_probe.report.pdf import write_report
    from karma_probe.report.results import load_run
    from karma_probe.rundir import git_sha, now, versions

    runs = [load_run(d) for d in dirs]
    base, tuned = runs[0], runs[1:]
    comparisons = {t.name: compare(base, t) for t in tuned}
    out.mkdir(parents=True, exist_ok=True)
    page = (f"Diagnosis: each tuned model vs the base model ({base.name})", f"{METHOD} Correction: {CORRECTION}.",
            list(DIAGNOSIS_COLUMNS), diagnosis_rows(comparisons))
    written = write_report(runs, out / "report.pdf", first_page=page)
    if junit:
        write_junit(junit, comparisons, base.name)
    return {
        "schema": SCHEMA,
        "base": _describe(models[0], base),
        "tuned": [_describe(m, r) for m, r in zip(models[1:], tuned)],
        "headline_set": base.analysis.headline_set,
        "comparisons": comparisons,
        "absent": {r.name: absent(r) for r in runs},
        "uncertainty": METHOD,
        "correction": CORRECTION,
        "report": {"pdf": str(written.path), "pages": written.pages},
        "provenance": {"git_sha": git_sha(), "versions": versions(), "created": now()},
    }


def _describe(model: Model, run) -> dict:
    return {"name": run.name, "model": str(Path(model.path).resolve()),
            "adapter": str(Path(model.adapter).resolve()) if model.adapter else None, "run": str(run.path)}


DIAGNOSIS_COLUMNS = ("tuned model", "metric", "better", "base", "tuned", "tuned − base", "raw 95 % CI",
                     "verdict (Holm)")


def diagnosis_rows(comparisons: dict[str, list[dict]]) -> list[list[str]]:
    """The diagnosis as table rows (the PDF page): tuned model, metric, better, base, tuned, Δ, raw CI,
    the Holm-corrected verdict (with the raw one where they differ)."""
    from karma_probe.analyzers.catalogue import format_delta, format_value

    rows = []
    for name, entries in comparisons.items():
        for e in entries:
            ci = "–" if e["ci_low"] is None else f"[{format_delta(e['ci_low'])}, {format_delta(e['ci_high'])}]"
            word = e["verdict"] + (f": {e['direction']}" if e["direction"] else "")
            if e.get("raw_verdict") not in (None, e["verdict"]):  # Holm retained what the raw 95 % CI rejected
                word += f" (raw: {e['raw_verdict']})"
            rows.append([name, e["metric"], "higher" if e["higher_is_better"] else "lower", format_value(e["base"]),
                         format_value(e["tuned"]), format_delta(e["difference"]), ci, word])
    return rows


def write_junit(path: str | Path, comparisons: dict[str, list[dict]], base: str) -> None:
    """JUnit XML through check.py's writer: one testcase per (tuned model, metric); a metric that
    differs for the worse is a failure, one that differs for the better or is within noise passes."""
    from karma_probe.report.check import Outcome, write_junit as junit_writer

    outcomes = []
    for name, entries in comparisons.items():
        for e in entries:
            failed = e["verdict"] == "differs" and e["direction"] == "worse"
            status = "failed" if failed else "improved" if e["direction"] == "better" else "ok"
            ci = "no CI" if e["ci_low"] is None else f"95 % CI [{e['ci_low']:.4g}, {e['ci_high']:.4g}]"
            outcomes.append(Outcome(kind="diagnose", metric=e["metric"], claim=f"{name} vs {base}", actual=e["tuned"],
                                    reference=e["base"], slack=None, status=status,
                                    message=f"{name} − {base}: {e['difference']:+.4g}, {ci}: {e['verdict']}"
                                            + (f" ({e['direction']})" if e["direction"] else "")))
    junit_writer(path, outcomes, f"karma-probe diagnose vs {base}")
