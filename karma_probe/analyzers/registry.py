"""The metric registry: a plain dict from metric name to its analyzer and direction.

Each analyzer registers itself next to its definition (as lm-evaluation-harness does)::

    @register("sink_mass", higher_is_better=False, needs=("capture",))
    def sink_mass(inputs) -> Measurement:
        '''Formula, range, meaning, reference.'''

so ``analysis.json`` can carry ``higher_is_better`` for every summary metric and the CI gate needs
no table of its own. What else is known about a metric (family, headline, claim, range) is in
:mod:`karma_probe.analyzers.catalogue`, which the registry checks each registration against.
This module imports no torch (its Record, from karma_probe.rundir, needs only numpy): the gate installs light.

An analyzer takes an :class:`karma_probe.analyzers.inputs.RunInputs` (the run's capture, model and
metrics, loaded lazily) and returns a :class:`Measurement`: one headline number (the
``summary`` entry) and tidy :class:`Record` rows (per layer / head / embedding set). An analyzer
whose input does not exist for this run (no reconstruction path in an untouched model, no
``metrics.json``) raises :class:`Absent`; the metric is then listed under ``absent`` with the reason.
:class:`Record` is analysis.json's (:mod:`karma_probe.rundir.analysis`), re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from karma_probe.analyzers import catalogue
from karma_probe.core.errors import BadInput
from karma_probe.rundir.analysis import Record

if TYPE_CHECKING:
    from karma_probe.analyzers.bootstrap import Interval

# What an analyzer reads. "capture": RUN/capture (no torch); "model": the run's checkpoint
# (torch); "metrics": RUN/metrics.json.
NEEDS = ("capture", "model", "metrics")

# The metric catalogue (analyzers/catalogue.py: family, direction, headline, claim, range), in the
# order analyze runs it. The registry refuses any other name, so a typo cannot create a metric the
# report never shows, and refuses an analyzer whose direction or module disagrees with it.
METRIC_NAMES = catalogue.METRIC_NAMES
# The issue-13 additions (nulls, the decoder on the run's own backbone) and the original design's metrics
DERIVED_METRICS = tuple(f.name for f in catalogue.CATALOGUE if f.base)
DESIGN_METRICS = tuple(f.name for f in catalogue.CATALOGUE if not f.base)


@dataclass(frozen=True)
class Measurement:
    """What one analyzer returns: the headline (``summary``) value, its records, optional samples."""

    value: float
    records: tuple[Record, ...]
    samples: tuple[dict, ...] = ()  # e.g. decoded texts: {"history", "truth", "decoded", "decoder"}
    interval: "Interval | None" = None  # 95 % bootstrap interval over probes (analyzers/bootstrap.py)


class Absent(Exception):
    """This run has no input for the metric (e.g. an untouched model has no reconstruction path)."""


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    needs: frozenset[str]
    family: str  # the module that defines it: attention, geometry, decodability, knowledge, retrieval
    fn: Callable = field(repr=False)

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip()

    def __call__(self, inputs) -> Measurement:
        return self.fn(inputs)


METRICS: dict[str, Metric] = {}


def register(name: str, *, higher_is_better: bool, needs: tuple[str, ...]):
    """Decorator: add ``fn`` to :data:`METRICS` under ``name`` with its direction and inputs."""
    if name not in METRIC_NAMES:
        raise ValueError(f"{name!r} is not a known metric (see karma-probe analyze --list)")
    if not isinstance(higher_is_better, bool):
        raise ValueError(f"{name}: higher_is_better must be True or False")
    facts = catalogue.FACTS[name]
    if higher_is_better != facts.higher_is_better:
        raise ValueError(f"{name}: higher_is_better={higher_is_better} but the catalogue says {facts.higher_is_better}")
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"{name}: unknown inputs {sorted(unknown)}; known: {NEEDS}")

    def decorate(fn: Callable) -> Callable:
        if name in METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        family = fn.__module__.rsplit(".", 1)[-1]
        if family != facts.family:
            raise ValueError(f"{name}: defined in {fn.__module__}, but the catalogue files it under {facts.family}")
        METRICS[name] = Metric(name, higher_is_better, frozenset(needs), family, fn)
        return fn

    return decorate


def select(names: str | list[str] | None) -> list[Metric]:
    """The metrics for ``--metrics a,b`` (all, in registry order, for None); unknown names are BadInput."""
    if names is None:  # catalogue order: cheap capture-only metrics first, then the model's
        return sorted(METRICS.values(), key=lambda m: METRIC_NAMES.index(m.name))
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        known = [n for n in METRIC_NAMES if n in METRICS]
        raise BadInput(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if not names:
        raise BadInput(f"no metric named; known: {', '.join(METRICS)}")
    return [METRICS[n] for n in dict.fromkeys(names)]


def directions() -> dict[str, bool]:
    return {name: m.higher_is_better for name, m in METRICS.items()}

