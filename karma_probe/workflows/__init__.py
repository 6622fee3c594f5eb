"""Whole workflows that chain the stages: the study and the own-model diagnosis.

- ``reproduce``  train each condition and seed, capture, analyze, report; resumable, shared by
                 concurrent reproductions through the run locks (``karma-probe reproduce``)
- ``diagnose``   capture, analyze and compare a base and its fine-tunes (``karma-probe diagnose``)
- ``regimes``    one study report from runs of several training regimes, made by separate
                 reproductions, a Holm-corrected comparison per regime (``karma-probe study``)

Imports: core, rundir, data, model, train, capture, analyzers, report.
"""
