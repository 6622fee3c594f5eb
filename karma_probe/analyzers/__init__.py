"""Registered analyzers, one module per metric family
(``karma-probe analyze --list`` prints them all).

Importing this package fills :data:`karma_probe.analyzers.registry.METRICS`; none of the modules
imports torch at import time, so the registry (names, directions, docs) loads light.

A new metric: its entry in ``catalogue.FACTS`` (family, direction, the paper's claim), then a function
in its family's module, decorated with ``@register(name, ...)``, whose docstring gives the formula. ``run`` is ``karma-probe analyze``: the
registered analyzers on a run → analysis.json.

Imports: core, rundir, data, model, capture.
"""

from karma_probe.analyzers import attention, decodability, geometry, knowledge, retrieval  # noqa: F401  (registration)
from karma_probe.analyzers.registry import METRICS, Absent, Measurement, Metric, directions, select
from karma_probe.rundir.analysis import Record

__all__ = ["METRICS", "Absent", "Measurement", "Metric", "Record", "directions", "select"]
