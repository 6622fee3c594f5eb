"""Headline numbers across runs: one bar per run (or per condition, over its seeds) for one summary metric."""

from __future__ import annotations

import math
from typing import Sequence

from karma_probe.report.figures.spec import FigureSpec, ci_note, direction_note, join_notes, series
from karma_probe.report.figures.style import run_look, run_looks
from karma_probe.report.results import Run, direction


def metric_bars(runs: Sequence[Run], metric: str) -> FigureSpec:
    """``summary[metric]`` of each run that has a finite value, as bars named by run, with the
    run's 95 % CI as error bars where it has one (``Run.interval``: users for retrieval, probes
    otherwise), each bar in its run's colour (a seed's shade of its condition's hue)."""
    have = [r for r in runs if math.isfinite(r.summary.get(metric, math.nan))]
    cis = [r.interval(metric) for r in have]
    looks = run_looks(runs)
    bars = (series(metric, [r.name for r in have], [r.summary[metric] for r in have],
                   low=[c.low if c else None for c in cis], high=[c.high if c else None for c in cis],
                   colours=[looks[r.name].colour for r in have]),) if have else ()
    return FigureSpec(kind="bar", title=metric, y_label=metric, series=bars,
                      note=join_notes(direction_note(direction(runs, metric)), ci_note(bars)))


def condition_bars(runs: Sequence[Run], metric: str) -> FigureSpec:
    """``summary[metric]`` per condition: the mean over its runs (seeds) as a bar named by the
    condition, the 95 % t-interval over seeds as error bars (a condition of one run keeps
    that run's own CI, as in :func:`metric_bars`); the numbers are ``study.table``'s. Each bar is in
    its condition's colour."""
    from karma_probe.report import study

    have = [r for r in runs if math.isfinite(r.summary.get(metric, math.nan))]
    cells = {c: study.cell(rs, metric) for c, rs in study.by_condition(have).items()}
    bars = (series(metric, list(cells), [x["mean"] for x in cells.values()], low=[x["ci_low"] for x in cells.values()],
                   high=[x["ci_high"] for x in cells.values()], colours=[run_look(c).colour for c in cells]),) if cells else ()
    most = max((x["n"] for x in cells.values()), default=0)
    fewer = ", ".join(f"{c}: {x['n']}" for c, x in cells.items() if x["n"] != most)
    runs_note = (f"mean of {most} seeds" + (" ± 95 % CI" if ci_note(bars) else "") + (f" ({fewer})" if fewer else "")
                 if cells else "")
    return FigureSpec(kind="bar", title=metric, y_label=metric, series=bars,
                      note=join_notes(direction_note(direction(runs, metric)), runs_note))
