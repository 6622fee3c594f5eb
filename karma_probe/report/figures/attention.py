"""Attention figures: where the attention mass goes, by layer, by head, and in one probe's map.

Collapse shows up as attention sinks: ``sink_mass`` rising with depth, heads that
all stare at token 0, and vertical "barcode" strips in a full map.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from karma_probe.core.errors import BadInput
from karma_probe.report.figures.spec import FigureSpec, direction_note, series
from karma_probe.report.figures.style import run_looks
from karma_probe.report.results import Run, direction
from karma_probe.rundir.capture import ProbeMap


def metric_by_layer(runs: Sequence[Run], metric: str) -> FigureSpec:
    """One line per run: ``metric`` per layer (per-layer records, else the mean over heads)."""
    lines, looks = [], run_looks(runs)
    for run in runs:
        values = run.analysis.by_layer(metric)
        if values:
            lines.append(series(run.name, values.keys(), values.values(), look=looks[run.name]))
    return FigureSpec(kind="line", title=f"{metric} by layer", x_label="layer", y_label=metric,
                      series=tuple(lines), integer_x=True, note=direction_note(direction(runs, metric)))


def sink_mass_by_layer(runs: Sequence[Run]) -> FigureSpec:
    """Mean first-token attention mass per layer — the headline collapse curve."""
    return metric_by_layer(runs, "sink_mass")


def head_heatmap(run: Run, metric: str = "sink_mass", vmin: float | None = None,
                 vmax: float | None = None) -> FigureSpec:
    """``metric`` for every (layer, head) of one run: sink heads light up as bright cells."""
    matrix = run.analysis.by_layer_head(metric)
    if matrix is None:
        matrix = np.zeros((0, 0))
    return FigureSpec(kind="heatmap", title=f"{run.name}: {metric} by layer and head",
                      x_label="head", y_label="layer", matrix=matrix,
                      x_ticks=tuple(str(h) for h in range(matrix.shape[1])),
                      y_ticks=tuple(str(layer) for layer in range(matrix.shape[0])),
                      color_label=metric, note=direction_note(direction([run], metric)), annotate=True,
                      vmin=vmin, vmax=vmax)


def head_heatmaps(runs: Sequence[Run], metric: str = "sink_mass") -> list[FigureSpec]:
    """``head_heatmap`` of each run on one shared colour scale, so equal colours mean equal values
    across runs (per-run scales would make a mild run look as saturated as a collapsed one)."""
    values = [m[np.isfinite(m)] for r in runs if (m := r.analysis.by_layer_head(metric)) is not None]
    values = np.concatenate(values) if values else np.zeros(0)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (None, None)
    return [head_heatmap(r, metric, vmin=lo, vmax=hi) for r in runs]


def attention_map(probe: ProbeMap, layer: int, head: int, tokens: Sequence[str] | None = None,
                  run_name: str = "") -> FigureSpec:
    """One probe's attention matrix at (layer, head): rows are queries, columns keys.

    ``tokens`` are the decoded ``probe.input_ids`` (results.decode_tokens); the caller decodes so
    figures stay free of tokenizers. The colour scale tops out at the largest weight outside row 0,
    because row 0 always puts 1.0 on itself and would wash every other cell out.
    """
    n_layers, n_heads, t, _ = probe.attn.shape
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise BadInput(f"probe{probe.index}: no layer {layer} / head {head} (maps have {n_layers} layers, {n_heads} heads)")
    labels = tuple(tokens) if tokens is not None else tuple(str(int(i)) for i in probe.input_ids)
    if len(labels) != t:
        raise BadInput(f"probe{probe.index}: {len(labels)} token labels for {t} positions")
    matrix = np.asarray(probe.attn[layer, head], dtype=float)  # (T_query, T_key)
    vmax = float(matrix[1:].max()) if t > 1 else 1.0
    prefix = f"{run_name}: " if run_name else ""
    return FigureSpec(kind="heatmap", title=f"{prefix}probe {probe.index}, layer {layer}, head {head}",
                      x_label="key token", y_label="query token", matrix=matrix,
                      x_ticks=labels, y_ticks=labels, color_label="attention",
                      vmin=0.0, vmax=vmax or 1.0)


def strongest_sink(run: Run, metric: str = "sink_mass") -> tuple[int, int] | None:
    """The (layer, head) with the largest ``metric``: where a barcode is most likely to show."""
    matrix = run.analysis.by_layer_head(metric)
    if matrix is None or np.isnan(matrix).all():
        return None
    layer, head = np.unravel_index(np.nanargmax(matrix), matrix.shape)
    return int(layer), int(head)
