"""Whole workflows that chain the stages: the study and the own-model diagnosis.

- ``reproduce``  train each condition and seed, capture, analyze, report; resumable, shared by
                 concurrent reproductions through the run locks (``karma-probe reproduce``)
- ``diagnose``   capture, analyze and compare a base and its fine-tunes (``karma-probe diagnose``)

Imports: core, rundir, data, model, train, capture, analyzers, report.
"""
