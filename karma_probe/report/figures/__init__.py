"""Pure figure functions shared by the dashboard and the PDF report, so the two cannot disagree.

Each function takes loaded run data (karma_probe.report.results) and returns a renderer-neutral
``FigureSpec``; ``to_plotly`` / ``to_matplotlib`` draw it. No torch anywhere in here.
"""

from karma_probe.report.figures.attention import attention_map, head_heatmap, head_heatmaps, metric_by_layer, sink_mass_by_layer, strongest_sink
from karma_probe.report.figures.calibration import dose_response, family_figure
from karma_probe.report.figures.geometry import cosine_histogram, pca_scatter, role_pca, singular_spectrum
from karma_probe.report.figures.render import to_matplotlib, to_plotly
from karma_probe.report.figures.retrieval import hr_at_k
from karma_probe.report.figures.spec import FigureSpec, Series
from karma_probe.report.figures.style import Look, run_look, run_looks
from karma_probe.report.figures.summary import condition_bars, metric_bars
from karma_probe.report.figures.training import condition_trajectory, gradient_ratios, loss_curves, metric_trajectory, regime_trajectory
from karma_probe.report.figures.verdict import claims_forest, claims_forest_regimes

__all__ = [
    "FigureSpec", "Series", "Look", "run_look", "run_looks", "to_plotly", "to_matplotlib",
    "metric_by_layer", "sink_mass_by_layer", "head_heatmap", "head_heatmaps", "attention_map", "strongest_sink",
    "singular_spectrum", "cosine_histogram", "pca_scatter", "role_pca",
    "claims_forest", "claims_forest_regimes", "dose_response", "family_figure", "condition_bars", "condition_trajectory", "gradient_ratios",
    "hr_at_k", "loss_curves", "metric_trajectory", "metric_bars", "regime_trajectory",
]
