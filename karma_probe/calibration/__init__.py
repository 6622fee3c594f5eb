"""Calibration: positive controls for the instruments (``karma-probe calibrate``).

A diagnostic earns trust the way a lab assay does: plant the effect at known doses and show the
reading moves. Modules, in the order data flows through them:

- ``interventions``  the planted collapses (hooks on the model, transforms of its embeddings), torch
- ``run``            plain capture → per family, per dose: intervention → capture → analyzers → report
- ``response``       slope, its bootstrap interval, monotonicity; calibration.json's format and
                     :func:`dose_for` (a metric difference → the planted dose), numpy only

This package's top level imports no torch: ``from karma_probe.calibration import dose_for`` is light.
"""

from karma_probe.calibration.response import SCHEMA, dose_for, load, metric_response

__all__ = ["SCHEMA", "dose_for", "load", "metric_response"]
