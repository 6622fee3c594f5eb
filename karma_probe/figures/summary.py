"""Headline numbers across runs: one bar per run for one summary metric."""

from __future__ import annotations

import math
from typing import Sequence

from karma_probe.figures.spec import FigureSpec, ci_note, direction_note, join_notes, series
from karma_probe.results import Run, direction


def metric_bars(runs: Sequence[Run], metric: str) -> FigureSpec:
    """``summary[metric]`` of each run that has a finite value, as bars named by run, with the
    run's 95 % CI as error bars where it has one (``Run.interval``: users for retrieval, probes
    otherwise)."""
    have = [r for r in runs if math.isfinite(r.summary.get(metric, math.nan))]
    cis = [r.interval(metric) for r in have]
    bars = (series(metric, [r.name for r in have], [r.summary[metric] for r in have],
                   low=[c.low if c else None for c in cis], high=[c.high if c else None for c in cis]),) if have else ()
    return FigureSpec(kind="bar", title=metric, y_label=metric, series=bars,
                      note=join_notes(direction_note(direction(runs, metric)), ci_note(bars)))
