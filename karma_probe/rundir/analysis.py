"""``analysis.json`` (checkpoints.md, "Analysis"): the one :class:`Record`, :class:`Analysis`, parse and write.

``karma-probe analyze`` assembles the file (its analyzers return :class:`Record` rows, written with
:meth:`Record.to_json`) and writes it with :func:`write_analysis`; the report, the dashboard and
the CI gate read it back as an :class:`Analysis` with :func:`read_analysis`, which refuses another
:data:`SCHEMA` and names the file and field of anything malformed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from karma_probe.core.errors import BadInput
from karma_probe.rundir.fields import expect, finite_or_none, is_int, number, numbers
from karma_probe.rundir.io import read_json, write_json
from karma_probe.rundir.layout import ANALYSIS, ANALYSIS_SCHEMA, PROBE_SETS
from karma_probe.rundir.run import read_state

SCHEMA = ANALYSIS_SCHEMA


@dataclass(frozen=True)
class Record:
    """One tidy number. ``layer`` / ``head`` are None where the number is not per layer / head.

    ``set`` names what it was measured on: a probe set of the capture (``history``, ``text``,
    ``history_pooled``), an embedding set (``interest``, ``items``, ``marker``), or the split scored
    (``test``); None where the file does not say. ``value`` is NaN where the file holds null.
    """

    metric: str
    value: float
    layer: int | None = None
    head: int | None = None
    set: str | None = None

    def to_json(self, higher_is_better: bool) -> dict:
        """The ``records`` entry of analysis.json (a non-finite value is written as null)."""
        return {"metric": self.metric, "layer": self.layer, "head": self.head, "set": self.set,
                "value": finite_or_none(self.value), "higher_is_better": higher_is_better}

    @classmethod
    def from_json(cls, r: Any, where: str = "record") -> "Record":
        """A ``records`` entry, checked; ``where`` names it in errors (``FILE: records[3]``)."""
        r = expect(r, dict, where)
        if not isinstance(r.get("metric"), str) or not r["metric"]:
            raise BadInput(f"{where}.metric must be a non-empty string, got {r.get('metric')!r}")
        for axis in ("layer", "head"):
            if r.get(axis) is not None and not (is_int(r[axis]) and r[axis] >= 0):
                raise BadInput(f"{where}.{axis} must be a non-negative integer or null, got {r[axis]!r}")
        if r.get("set") is not None and not isinstance(r["set"], str):
            raise BadInput(f"{where}.set must be a string or null, got {r['set']!r}")
        return cls(metric=r["metric"], value=number(r.get("value"), f"{where}.value"),
                   layer=r.get("layer"), head=r.get("head"), set=r.get("set"))


@dataclass(frozen=True)
class Analysis:
    """The content of ``analysis.json`` that the report, the dashboard and the gate use."""

    run: dict[str, Any]
    records: tuple[Record, ...]
    summary: dict[str, float]
    higher_is_better: dict[str, bool]
    samples: dict[str, Any] = field(default_factory=dict)
    trajectory: tuple[dict, ...] = ()  # ({"step": int, "summary": {metric: float}}, ...)
    # 95 % bootstrap CI over probes of one run's metric: {metric: (low, high)}; {} when not written
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    # seconds its analyzers took (final checkpoint + every trajectory checkpoint); None when not recorded
    seconds: float | None = None
    # fingerprints of the capture and checkpoint it was computed from (rundir.chain); {} when not recorded
    derived_from: dict[str, Any] = field(default_factory=dict)
    # the probe set of the attention headlines: history, or for a model captured without a dataset user / text
    headline_set: str = "history"

    def _layered(self, r: Record) -> bool:
        """A per-layer record of the headline probe set (or of no probe set: geometry's marker, ...)."""
        return r.set not in PROBE_SETS or r.set == self.headline_set

    def by_layer(self, metric: str) -> dict[int, float]:
        """``metric`` per layer: the per-layer records if any, else the mean of its per-head records."""
        per_layer = {r.layer: r.value for r in self.records
                     if r.metric == metric and r.layer is not None and r.head is None and self._layered(r)}
        if per_layer:
            return dict(sorted(per_layer.items()))
        heads: dict[int, list[float]] = {}
        for r in self.records:
            if r.metric == metric and r.layer is not None and r.head is not None and self._layered(r):
                heads.setdefault(r.layer, []).append(r.value)
        return {layer: float(np.mean(v)) for layer, v in sorted(heads.items())}

    def by_layer_head(self, metric: str) -> np.ndarray | None:
        """``metric`` as a ``[layers, heads]`` matrix (NaN where a cell has no record), or None."""
        cells = [r for r in self.records if r.metric == metric and r.layer is not None and r.head is not None
                 and self._layered(r)]
        if not cells:
            return None
        out = np.full((max(r.layer for r in cells) + 1, max(r.head for r in cells) + 1), np.nan)
        for r in cells:
            out[r.layer, r.head] = r.value
        return out


def parse_analysis(obj: Any, where: str) -> Analysis:
    """Validate a decoded ``analysis.json``; ``where`` names the file in every error."""
    if not isinstance(obj, dict):
        raise BadInput(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if obj.get("schema") != SCHEMA:
        raise BadInput(f"{where}: schema is {obj.get('schema')!r}, expected {SCHEMA!r} "
                       "(written by another karma_probe version? re-run `karma-probe analyze`)")
    for key in ("records", "summary", "higher_is_better"):
        if key not in obj:
            raise BadInput(f"{where}: missing {key!r}")
    run = expect(obj.get("run", {}), dict, f"{where}: 'run'")
    records = tuple(Record.from_json(r, f"{where}: records[{i}]")
                    for i, r in enumerate(expect(obj["records"], list, f"{where}: 'records'")))
    summary = numbers(obj["summary"], f"{where}: summary")
    hib = expect(obj["higher_is_better"], dict, f"{where}: 'higher_is_better'")
    for k, v in hib.items():
        if not isinstance(v, bool):
            raise BadInput(f"{where}: higher_is_better[{k!r}] must be true or false, got {v!r}")
    samples = expect(obj.get("samples") or {}, dict, f"{where}: 'samples'")
    decoded = expect(samples.get("decoded", []), list, f"{where}: samples.decoded")
    for i, s in enumerate(decoded):
        expect(s, dict, f"{where}: samples.decoded[{i}]")
    trajectory = []
    for i, t in enumerate(expect(obj.get("trajectory") or [], list, f"{where}: 'trajectory'")):
        t = expect(t, dict, f"{where}: trajectory[{i}]")
        if not is_int(t.get("step")):
            raise BadInput(f"{where}: trajectory[{i}].step must be an integer, got {t.get('step')!r}")
        trajectory.append({"step": t["step"], "summary": numbers(t.get("summary", {}), f"{where}: trajectory[{i}].summary")})
    intervals = {}
    for metric, pair in expect(obj.get("intervals") or {}, dict, f"{where}: 'intervals'").items():
        if not isinstance(pair, list) or len(pair) != 2:
            raise BadInput(f"{where}: intervals[{metric!r}] must be [low, high], got {pair!r}")
        low, high = (number(v, f"{where}: intervals[{metric!r}]") for v in pair)
        if low > high:
            raise BadInput(f"{where}: intervals[{metric!r}] has low {low} > high {high}")
        intervals[metric] = (low, high)
    return Analysis(run=run, records=records, summary=summary, higher_is_better=dict(hib),
                    samples=samples, trajectory=tuple(sorted(trajectory, key=lambda t: t["step"])),
                    intervals=intervals, seconds=_seconds(obj), headline_set=_headline_set(obj, where),
                    derived_from=expect(obj.get("derived_from") or {}, dict, f"{where}: 'derived_from'"))


def _headline_set(obj: dict, where: str) -> str:
    """analysis.json ``headline_set`` (written since captures may lack history probes); history when absent."""
    name = obj.get("headline_set", "history")
    if name not in PROBE_SETS:
        raise BadInput(f"{where}: headline_set must be one of {', '.join(PROBE_SETS)}, got {name!r}")
    return name


def _seconds(obj: dict) -> float | None:
    """The analyzers' recorded seconds (``analyzed.seconds`` and each ``trajectory[].seconds``), summed;
    a bookkeeping field, so a missing or odd one gives None instead of refusing the file."""
    blocks = [(obj.get("analyzed") or {}).get("seconds")] + [t.get("seconds") for t in obj.get("trajectory") or []
                                                             if isinstance(t, dict)]
    values = [v for b in blocks if isinstance(b, dict) for v in b.values()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return round(float(sum(values)), 1) if values else None


def read_analysis(run_dir: str | Path) -> Analysis:
    """``analysis.json`` of a run directory, parsed; BadInput when it is missing or malformed."""
    f = Path(run_dir) / ANALYSIS
    if not f.is_file():
        raise BadInput(f"{f}: not found (run `karma-probe analyze {run_dir}` first)")
    return parse_analysis(read_json(f, "analysis file"), str(f))


def read_previous(run_dir: str | Path) -> dict | None:
    """The raw content of an existing ``analysis.json`` of this schema (for ``analyze --metrics``
    to keep the metrics it does not recompute), or None: absent, unreadable or another schema."""
    f = Path(run_dir) / ANALYSIS
    if not f.is_file():
        return None
    try:
        old = read_json(f, "analysis file")
    except BadInput:
        return None
    return old if isinstance(old, dict) and old.get("schema") == SCHEMA else None


def write_analysis(run_dir: str | Path, content: dict) -> Path:
    """Atomically write ``analysis.json`` (``content`` gets this :data:`SCHEMA` first)."""
    f = Path(run_dir) / ANALYSIS
    write_json(f, {"schema": SCHEMA, **{k: v for k, v in content.items() if k != "schema"}})
    return f


def run_block(run_dir: Path, config: dict, checkpoint: Path) -> dict:
    """analysis.json's ``run``: who was analyzed (from config.json) and which checkpoint and step."""
    train = config.get("train") or {}
    return {"name": config.get("name", run_dir.name), "condition": config.get("condition"), "seed": config.get("seed"),
            "git_sha": config.get("git_sha"), "versions": config.get("versions", {}), "model": train.get("model"),
            "checkpoint": relative(checkpoint, run_dir), "step": read_state(checkpoint).get("step")}


def relative(path: Path, run_dir: Path) -> str:
    """``path`` relative to the run directory where it lies inside it (``checkpoints/step-000100``)."""
    try:
        return str(Path(path).relative_to(run_dir))
    except ValueError:
        return str(path)
