"""One study report from runs that separate reproductions made: a comparison per training regime.

A *regime* is what the runs train: the top k decoder layers (config ``train_layers = k``) or every
layer (``train_layers = 0``). Study v3 trains action-only and KARMA in two regimes, and KARMA with a
setting (``--set reg_weight=0.1 --tag lam0.1``) that action-only does not share, so no single
``reproduce`` call holds the whole study; :func:`write_study` puts its runs back together:

- each regime's runs (:func:`karma_probe.report.study.split`: every condition and seed, and the
  references whose config carries that regime: the step-0 model and the untouched backbone) get
  the report ``reproduce`` writes
  (``write_outputs``: summary.json, summary.md, report.pdf, figures) in ``OUT/<slug>/``, so each
  regime's verdict is its own Holm family, action-only vs KARMA paired by seed;
- ``OUT/summary.json`` (schema ``karma_probe.study/1``) holds every regime's summary under
  ``regimes``; ``OUT/summary.md`` their tables one after the other;
- ``OUT/claims_forest.png`` is the verdict of every regime as one picture, ``OUT/trajectory_<m>.png``
  each trajectory metric of action-only and KARMA in every regime, and ``OUT/report.pdf`` those
  pages plus each regime's claims table (each regime's full diagnostic PDF is in its folder).

Everything is written to a temporary folder beside ``OUT`` and moved in at the end, so a failure
leaves no half-written report.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from karma_probe.report import study
from karma_probe.report.figures import FigureSpec
from karma_probe.report.results import Run
from karma_probe.workflows.reproduce import Plan, save_figures, write_outputs, write_summary

SCHEMA = "karma_probe.study/1"


def write_study(run_dirs: Sequence[str | Path], out_dir: str | Path, calibration: str | Path | None = None) -> dict:
    """The combined report of ``run_dirs`` in ``out_dir`` (see the module docstring); returns the
    top-level summary."""
    from karma_probe.report.pdf import write_study_report
    from karma_probe.report.results import distinct, load_run
    from karma_probe.rundir import check_writable, git_sha, now, versions, write_json, write_text

    out_dir = Path(out_dir)
    check_writable(out_dir, directory=True)
    if calibration is not None:  # read now, before any page is drawn: a bad file is one line and exit 2
        study.calibration_doses(Path(calibration))
    runs = distinct([load_run(d) for d in run_dirs])
    regimes = study.split(runs)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        summaries: dict[str, dict] = {}
        by_name: dict[str, list[Run]] = {}
        for k, rs in regimes.items():
            name, slug = study.regime_name(k), study.regime_slug(k)
            trained = [r for r in rs if r.condition != "base"]
            preset = trained[0].config.get("preset") or "?"
            seeds = sorted({r.seed for r in trained if r.seed is not None})
            plan = Plan(preset=preset, seeds=tuple(seeds), report_dir=tmp / slug,
                        calibration=Path(calibration) if calibration else None)
            print(f"  {name}: {len(trained)} trained run(s), {len(rs) - len(trained)} reference(s) -> {slug}/", flush=True)
            summary = write_outputs(plan, [r.path for r in rs])
            summary["regime"] = {"name": name, "train_layers": k, "dir": slug}
            write_summary(tmp / slug, summary)
            summaries[name], by_name[name] = summary, rs
        verdicts = {n: s["verdict"] for n, s in summaries.items()}
        trajectories = trajectory_specs(by_name, summaries)
        figures = _figures(verdicts, trajectories, tmp)
        written = write_study_report(by_name, verdicts, list(trajectories.values()), tmp / "report.pdf")
        top = {"schema": SCHEMA, "regimes": summaries, "figures": figures,
               "report": {"pdf": "report.pdf", "pages": written.pages},
               "provenance": {"git_sha": git_sha(), "versions": versions(), "created": now()}}
        write_json(tmp / "summary.json", top)
        write_text(tmp / "summary.md", markdown(top))
        _move_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return top


def _move_in(tmp: Path, out_dir: Path) -> None:
    """Every file of ``tmp`` to the same place under ``out_dir`` (files already there are replaced;
    a regime folder is replaced whole, so no figure of an earlier report stays behind)."""
    out_dir.mkdir(exist_ok=True)
    for item in tmp.iterdir():
        target = out_dir / item.name
        if target.is_dir() and item.is_dir():
            shutil.rmtree(target)
        item.replace(target)


def trajectory_specs(regimes: dict[str, list[Run]], summaries: dict[str, dict]) -> dict[str, FigureSpec]:
    """``{metric: figure}``: each trajectory metric of action-only and KARMA in every regime
    (figures.regime_trajectory), each regime beside its own step-0 reference; metrics no
    checkpoint was analyzed for are left out."""
    from karma_probe.report import figures as F
    from karma_probe.report.results import direction

    all_runs = [r for rs in regimes.values() for r in rs]
    references = {n: study.trajectory_reference(rs) for n, rs in regimes.items()}
    out = {}
    for m in study.TRAJECTORY_METRICS:
        refs = {n: (base.summary.get(m) if base else None, name) for n, (base, name) in references.items()}
        spec = F.regime_trajectory({n: s["trajectory"] for n, s in summaries.items()}, m, refs, direction(all_runs, m))
        if not spec.empty:
            out[m] = spec
    return out


def _figures(verdicts: dict[str, list[dict]], trajectories: dict[str, FigureSpec], out: Path) -> list[str]:
    """claims_forest.png (every regime's verdict, where any has one) and trajectory_<metric>.png;
    returns the names written."""
    from karma_probe.report import figures as F

    specs = {"claims_forest.png": lambda: F.claims_forest_regimes(verdicts)} if any(verdicts.values()) else {}
    specs |= {f"trajectory_{m}.png": (lambda spec=spec: spec) for m, spec in trajectories.items()}
    return save_figures(specs, out)


def markdown(top: dict) -> str:
    """summary.md: a heading per regime, then that regime's summary.md two heading levels down."""
    parts = ["# Study by training regime", "",
             "Each regime is its own comparison (action-only vs KARMA paired by seed, Holm-corrected over its "
             "claims); its full report is in its folder. `claims_forest.png` shows every regime's verdict.", ""]
    for name, summary in top["regimes"].items():
        parts += [f"## {name} (`{summary['regime']['dir']}/`)", ""]
        # two levels down: the regime's own title ("# Study: ...") sits under the regime's heading
        parts += [("##" + line) if line.startswith("#") else line for line in study.summary_markdown(summary).splitlines()]
        parts.append("")
    return "\n".join(parts)
