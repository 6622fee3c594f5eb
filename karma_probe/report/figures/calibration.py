"""Calibration figures: one per planted family, one panel per metric — the dose on x, the metric
with its 95 % interval on y, the undosed model's value as a dashed line."""

from __future__ import annotations

import math

from karma_probe.report.figures.spec import FigureSpec, series


def dose_response(result: dict, family: str, metric: str) -> FigureSpec:
    """``metric``'s response in ``family`` of a calibration (calibration.json's content)."""
    block = result["families"][family]
    entry = block["metrics"][metric]
    doses = result["doses"]
    ivs = entry["intervals"]
    line = series(metric, doses, entry["values"], low=[iv[0] if iv else None for iv in ivs],
                  high=[iv[1] if iv else None for iv in ivs])
    lines = [line]
    undosed = (result.get("undosed") or {}).get(metric)
    if isinstance(undosed, (int, float)) and math.isfinite(undosed):
        lines.append(series("undosed", [doses[0], doses[-1]], [undosed, undosed], dashed=True))
    ci = entry.get("slope_ci")
    fit = f"slope {entry['slope']:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
    verdict = "as planted" if entry["as_planted"] else "NOT as planted"
    return FigureSpec(kind="line", title=metric, x_label="dose α", y_label=metric, series=tuple(lines),
                      note=f"expected {entry['expected']}: {verdict}\n{fit}")


def family_figure(result: dict, family: str):
    """A matplotlib Figure with one :func:`dose_response` panel per metric of ``family``."""
    from matplotlib.figure import Figure

    from karma_probe.report.figures.render import to_matplotlib

    metrics = list(result["families"][family]["metrics"])
    cols = min(3, max(1, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.5), layout="constrained")
    fig.suptitle(f"calibration: {family} — {result['families'][family]['intervention']}\n"
                 "error bars: the analyzers' 95 % intervals; slope: least squares over doses, 95 % paired "
                 "bootstrap interval over probes; dashed: undosed", fontsize=8, wrap=True)
    for k, metric in enumerate(metrics):
        to_matplotlib(dose_response(result, family, metric), fig.add_subplot(rows, cols, k + 1))
    if not metrics:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no metric measured", ha="center", va="center", transform=ax.transAxes, color="gray")
    return fig
