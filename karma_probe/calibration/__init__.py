"""Calibration: positive controls for the instruments (``karma-probe calibrate``).

A diagnostic earns trust the way a lab assay does: plant the effect at known doses and show the
reading moves. Modules, in the order data flows through them:

- ``interventions``  the planted collapses (hooks on the model, transforms of its embeddings), torch;
                     a new planted collapse goes here
- ``run``            plain capture → per family, per dose: intervention → capture → analyzers → report

The slopes, their intervals and calibration.json's format are read by the study too, so they live
in ``karma_probe.report.dose_response`` (numpy only).

Imports: core, rundir, data, model, capture, analyzers, report.
"""
