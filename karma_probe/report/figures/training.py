"""Training figures: the loss terms over steps, and how a collapse metric moved during training."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from karma_probe.report.figures.spec import FigureSpec, direction_note, series
from karma_probe.report.figures.style import DASHES, run_look, run_looks
from karma_probe.report.results import Run, direction

LOSS_KEYS = ("loss", "l_act", "l_gen", "l_rec")


def loss_curves(runs: Sequence[Run], keys: Sequence[str] = LOSS_KEYS) -> FigureSpec:
    """Each loss term from ``train_log.jsonl`` against step; a term never logged (or always
    null, e.g. ``l_gen`` of an action-only run) is left out rather than drawn as zeros.

    One run: a colour per term. Several: each run's colour (style.run_look), a line style per term."""
    lines, looks = [], run_looks(runs)
    for run in runs:
        for i, key in enumerate(keys):
            points = [(row["step"], row[key]) for row in run.train_log if _finite(row.get(key))]
            if points:
                name = key if len(runs) == 1 else f"{run.name} {key}"
                look = None if len(runs) == 1 else replace(looks[run.name], dash=DASHES[i % len(DASHES)])
                lines.append(series(name, [p[0] for p in points], [p[1] for p in points], look=look))
    title = "training losses" + (f": {runs[0].name}" if len(runs) == 1 else "")
    return FigureSpec(kind="line", title=title, x_label="step", y_label="loss",
                      series=tuple(lines), integer_x=True)


def gradient_ratios(runs: Sequence[Run]) -> FigureSpec:
    """Each regularizer's effective gradient relative to the action loss's, on the shared parameters,
    against step: λ_eff · ‖g_reg‖ / ‖g_act‖ with λ_eff the balanced weight ``w_*`` where the run
    balances, else its λ (train_log ``gn_*``, logged every ``grad_norm_every`` steps). Above 1 the
    regularizer dominates the update; the balanced form keeps it at most ρ."""
    from karma_probe.report.figures.spec import join_notes

    lines, looks, cosines = [], run_looks(runs), []
    for run in runs:
        train = run.config.get("train") or {}
        for i, reg in enumerate(("gen", "rec")):
            lam = train.get(f"lambda_{reg}") or 0.0
            points = [(row["step"], row.get(f"w_{reg}", lam) * row[f"gn_{reg}"] / row["gn_act"])
                      for row in run.train_log if _finite(row.get(f"gn_{reg}")) and (row.get("gn_act") or 0) > 0]
            cosines += [row[f"cos_act_{reg}"] for row in run.train_log if _finite(row.get(f"cos_act_{reg}"))]
            if points:
                look = replace(looks[run.name], dash=DASHES[i % len(DASHES)])
                lines.append(series(f"{run.name} {reg}", [p[0] for p in points], [p[1] for p in points], look=look))
    note = (f"cosine with the action gradient: median {sorted(cosines)[len(cosines) // 2]:+.2f} "
            f"(range {min(cosines):+.2f} to {max(cosines):+.2f})" if cosines else None)
    return FigureSpec(kind="line", title="regularizer gradient / action gradient (shared parameters)", x_label="step",
                      y_label="λ·‖g_reg‖ / ‖g_act‖", series=tuple(lines), integer_x=True,
                      note=join_notes(note))


def metric_trajectory(runs: Sequence[Run], metric: str) -> FigureSpec:
    """``metric`` at every analyzed checkpoint (analysis.json ``trajectory``), one line per run."""
    lines, looks = [], run_looks(runs)
    for run in runs:
        points = [(t["step"], t["summary"][metric]) for t in run.analysis.trajectory
                  if _finite(t["summary"].get(metric))]
        if points:
            lines.append(series(run.name, [p[0] for p in points], [p[1] for p in points], look=looks[run.name]))
    return FigureSpec(kind="line", title=f"{metric} over training", x_label="step", y_label=metric,
                      series=tuple(lines), integer_x=True, note=direction_note(direction(runs, metric)))


def condition_trajectory(traj: dict, metric: str, base: float | None = None,
                         higher_is_better: bool | None = None, base_name: str = "reference") -> FigureSpec:
    """``metric`` over training, one line per condition (mean over seeds, 95 % CI bars), from
    ``study.trajectory``'s ``conditions``, each in its condition's colour; ``base``: the reference's
    value (``base_name``, e.g. "step 0": study.trajectory_reference), drawn dashed in black."""
    from karma_probe.report.figures.spec import ci_note, join_notes

    lines = _condition_lines(traj, metric)
    if base is not None and _finite(base) and lines:
        steps = sorted({int(x) for s in lines for x in s.x})
        lines.append(series(base_name, [0, steps[-1]], [base, base], dashed=True,
                            look=replace(run_look("base"), dash="dash")))
    return FigureSpec(kind="line", title=f"{metric} over training", x_label="step", y_label=metric,
                      series=tuple(lines), integer_x=True,
                      note=join_notes(direction_note(higher_is_better), ci_note(lines)))


def _condition_lines(traj: dict, metric: str, suffix: str = "", dash: str | None = None) -> list:
    """One series per condition of ``study.trajectory``'s ``conditions`` that has ``metric``: mean over
    seeds with its CI, in the condition's colour; ``suffix`` appended to the name, ``dash`` the line style."""
    lines = []
    for cond, by_metric in (traj.get("conditions") or {}).items():
        rows = by_metric.get(metric) or []
        if rows:
            look = run_look(cond) if dash is None else replace(run_look(cond), dash=dash)
            lines.append(series(cond + suffix, [r["step"] for r in rows], [r["mean"] for r in rows],
                                low=[r["ci_low"] for r in rows], high=[r["ci_high"] for r in rows], look=look))
    return lines


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def regime_trajectory(by_regime: dict[str, dict], metric: str, references: dict[str, tuple[float | None, str]],
                      higher_is_better: bool | None = None) -> FigureSpec:
    """:func:`condition_trajectory` of several regimes in one figure: ``by_regime`` is ``{regime name:
    study.trajectory(...)}``, ``references`` ``{regime name: (value, name)}`` (its step-0 reference,
    study.trajectory_reference). A condition keeps its hue in every regime; the first regime is
    drawn solid, the next dashed, dotted, ... and its reference in black with the same line style."""
    from karma_probe.report.figures.spec import ci_note, join_notes

    lines, refs = [], []
    for i, (regime, traj) in enumerate(by_regime.items()):
        dash = DASHES[i % len(DASHES)]
        drawn = _condition_lines(traj, metric, f" · {regime}", dash)
        lines += drawn
        value, name = references.get(regime, (None, ""))
        if drawn and value is not None and _finite(value):
            refs.append((f"{name or 'reference'} · {regime}", value, replace(run_look("base"), dash=dash)))
    if lines:
        last = max(int(x) for s in lines for x in s.x)
        lines += [series(n, [0, last], [v, v], dashed=True, look=look) for n, v, look in refs]
    return FigureSpec(kind="line", title=f"{metric} over training, by regime", x_label="step", y_label=metric,
                      series=tuple(lines), integer_x=True,
                      note=join_notes(direction_note(higher_is_better), ci_note(lines)))
