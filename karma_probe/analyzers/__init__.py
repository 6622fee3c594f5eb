"""Registered analyzers, one module per metric family
(``karma-probe analyze --list`` prints them all).

Importing this package fills :data:`karma_probe.analyzers.registry.METRICS`; none of the modules
imports torch at import time, so the registry (names, directions, docs) loads light.
"""

from karma_probe.analyzers import attention, decodability, geometry, knowledge, retrieval  # noqa: F401  (registration)
from karma_probe.analyzers.registry import METRICS, Absent, Measurement, Metric, Record, directions, select

__all__ = ["METRICS", "Absent", "Measurement", "Metric", "Record", "directions", "select"]
