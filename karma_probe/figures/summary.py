"""Headline numbers across runs: one bar per run for one summary metric."""

from __future__ import annotations

import math
from typing import Sequence

from karma_probe.figures.spec import FigureSpec, direction_note, series
from karma_probe.results import Run, direction


def metric_bars(runs: Sequence[Run], metric: str) -> FigureSpec:
    """``summary[metric]`` of each run that has a finite value, as bars named by run."""
    have = [r for r in runs if math.isfinite(r.summary.get(metric, math.nan))]
    bars = (series(metric, [r.name for r in have], [r.summary[metric] for r in have]),) if have else ()
    return FigureSpec(kind="bar", title=metric, y_label=metric, series=bars,
                      note=direction_note(direction(runs, metric)))
