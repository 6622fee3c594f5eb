"""What a figure shows, independent of who draws it.

Figure functions (attention.py, geometry.py, retrieval.py, training.py) compute a ``FigureSpec``
from loaded run data; render.py draws it with plotly (dashboard) or matplotlib (PDF). All the
numbers are decided here, once — histogram bins included — so the two renderers cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from karma_probe.report.figures.style import Look

Kind = Literal["line", "bar", "heatmap", "hist", "scatter", "forest"]
KINDS = ("line", "bar", "heatmap", "hist", "scatter", "forest")


@dataclass(frozen=True, eq=False)
class Series:
    """One named set of points. For ``hist``, ``x`` are bin centres and ``y`` counts (see ``bin_width``)."""

    name: str
    x: np.ndarray  # numbers, or strings for categorical bars
    y: np.ndarray
    dashed: bool = False  # a reference line (e.g. a random ranker), not a run
    look: Look | None = None  # a run's or a condition's colour and line style (style.run_look); None: the cycle
    colours: tuple[str, ...] | None = None  # bar only: one colour per bar (bars of runs or conditions)
    # a 95 % CI per point as absolute bounds (drawn as error bars); None: no CI. NaN: none for that point
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def errors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The error-bar lengths below and above each point (``y - low``, ``high - y``, 0 where
        unknown; never negative, should an estimate sit a hair outside its own CI), or None."""
        if self.low is None or self.high is None:
            return None
        below = np.nan_to_num(np.clip(self.y - self.low, 0, None), nan=0.0)
        above = np.nan_to_num(np.clip(self.high - self.y, 0, None), nan=0.0)
        return below, above


@dataclass(frozen=True)
class ForestRow:
    """One row of a forest plot: an effect with a narrow (raw) and a wide (corrected) interval, on the
    plot's x scale; NaN where there is none. ``verdict`` picks the colour (style.VERDICT_INK),
    ``text`` is printed at the row's right end (the numbers in their own units)."""

    label: str
    group: str
    x: float
    low: float
    high: float
    low_wide: float
    high_wide: float
    verdict: str
    text: str = ""


@dataclass(frozen=True, eq=False)
class FigureSpec:
    kind: Kind
    title: str
    x_label: str = ""
    y_label: str = ""
    series: tuple[Series, ...] = ()
    # heatmap only: matrix[row, col] with row / column tick labels; rows are drawn top to bottom
    matrix: np.ndarray | None = None
    x_ticks: tuple[str, ...] = ()
    y_ticks: tuple[str, ...] = ()
    color_label: str = ""
    vmin: float | None = None
    vmax: float | None = None
    bin_width: float | None = None  # hist only
    log_y: bool = False
    log_x: bool = False
    annotate: bool = False  # heatmap: write each value into its cell (renderers skip it when too dense)
    integer_x: bool = False  # x is a layer index / step: no fractional ticks
    note: str = ""  # one line under the title, e.g. "lower is better"
    rows: tuple[ForestRow, ...] = ()  # forest only, top to bottom
    x_tick_values: tuple[float, ...] = ()  # forest only: where the x_ticks labels go
    meta: dict = field(default_factory=dict)  # extra facts a caller may show (not drawn)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown figure kind {self.kind!r}; one of {KINDS}")
        if self.kind == "heatmap":
            if self.matrix is None or self.matrix.ndim != 2:
                raise ValueError("a heatmap needs a 2-D matrix")
            rows, cols = self.matrix.shape
            if (self.y_ticks and len(self.y_ticks) != rows) or (self.x_ticks and len(self.x_ticks) != cols):
                raise ValueError(f"tick labels ({len(self.y_ticks)}, {len(self.x_ticks)}) do not fit matrix {self.matrix.shape}")

    @property
    def empty(self) -> bool:
        """Nothing to draw: renderers then show the title and a "no data" note."""
        if self.kind == "heatmap":
            return self.matrix is None or self.matrix.size == 0
        if self.kind == "forest":
            return not self.rows
        return not any(len(s.y) for s in self.series)


def forest_layout(rows: Sequence[ForestRow]) -> tuple[list[float], list[tuple[str, float]]]:
    """Where a forest plot's rows go, for both renderers: y of each row (0, -1, ... top down) and a
    heading ``(group, y)`` one step above the first row of each group."""
    ys, headings, y, group = [], [], 0.0, None
    for row in rows:
        if row.group != group:
            group = row.group
            headings.append((group, y))
            y -= 1
        ys.append(y)
        y -= 1
    return ys, headings


def series(name: str, x: Sequence, y: Sequence, dashed: bool = False,
           low: Sequence | None = None, high: Sequence | None = None, look: Look | None = None,
           colours: Sequence[str] | None = None) -> Series:
    """Build a Series from plain sequences (lists from JSON, dict views); ``low`` / ``high``:
    the CI bounds per point (None inside them for a point without one); ``colours``: one per bar."""
    x_arr = np.asarray(list(x))
    y_arr = np.asarray(list(y), dtype=float)
    if len(x_arr) != len(y_arr):
        raise ValueError(f"series {name!r}: {len(x_arr)} x values but {len(y_arr)} y values")
    bounds = []
    for b in (low, high):
        arr = None if b is None else np.array([np.nan if v is None else v for v in b], dtype=float)
        if arr is not None and len(arr) != len(y_arr):
            raise ValueError(f"series {name!r}: {len(arr)} CI bounds for {len(y_arr)} values")
        bounds.append(arr)
    if colours is not None and len(colours) != len(y_arr):
        raise ValueError(f"series {name!r}: {len(colours)} colours for {len(y_arr)} values")
    if any(b is None for b in bounds) or all(np.isnan(b).all() for b in bounds):
        bounds = [None, None]
    return Series(name=name, x=x_arr, y=y_arr, dashed=dashed, low=bounds[0], high=bounds[1], look=look,
                  colours=None if colours is None else tuple(colours))


def ci_note(specs_series: Sequence[Series]) -> str:
    """"error bars: 95 % CI" when any series carries a CI, else ""."""
    return "error bars: 95 % CI" if any(s.low is not None for s in specs_series) else ""


def join_notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def direction_note(higher_is_better: bool | None) -> str:
    return {True: "higher is better", False: "lower is better"}.get(higher_is_better, "")
