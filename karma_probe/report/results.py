"""Read finished run directories back as plain data, for the report, the dashboard and the CI gate.

Everything here is JSON, safetensors (through ``safetensors.numpy``) and numpy, never torch, so
``karma-probe check`` installs light and the dashboard starts fast. The files are read and checked
by :mod:`karma_probe.rundir` (formats in checkpoints.md): anything that does not match is a
``BadInput`` that names the file and the field, because a run dir is produced by other commands
and a user needs to know which one to re-run. This module adds what the consumers share on top:
a loaded :class:`Run`, listings of many runs, comparisons between runs.

``load_run`` needs ``analysis.json`` (what every consumer here shows) and reads ``config.json``,
``metrics.json`` and ``train_log.jsonl`` when they are there (a reference ``base`` run has no
training log). ``list_runs`` never raises for one bad run: it sorts a runs root into the runs that
load and the ones that do not, with the reason, so a listing of many runs survives one killed job.
``Run.chain`` says whether a run's analysis still derives from its capture and checkpoint
(karma_probe.rundir.chain); ``list_runs`` counts a BROKEN chain as a run that does not load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from karma_probe.core.errors import BadInput
from karma_probe.rundir import (RunPaths, config_hash, layout, read_analysis, read_config, read_hidden, read_maps, read_metrics,
                                read_train_log)
# re-exported: the analysis.json types and the run-dir names, as this module has always offered them
from karma_probe.rundir.analysis import Analysis
from karma_probe.rundir.capture import Hidden, ProbeMap
from karma_probe.rundir.chain import Chain, chain_status
from karma_probe.rundir.fields import is_int as _is_int
from karma_probe.rundir.layout import RUN_FILES, RUN_MARKERS


# --------------------------------------------------------------------------- one run

@dataclass(frozen=True)
class Run:
    """A loaded run directory. ``name`` is the directory name: unique inside a runs root."""

    path: Path
    name: str
    # repr=False: a listing of runs should print as names and paths, not thousands of records
    analysis: Analysis = field(repr=False)
    config: dict[str, Any] = field(repr=False)           # {} when config.json is absent
    metrics: dict[str, Any] | None = field(repr=False)   # None without metrics.json (a capture-only base run)
    train_log: tuple[dict, ...] = field(repr=False)      # () when there is no train_log.jsonl

    @cached_property
    def chain(self) -> Chain:
        """Whether this run's analysis is derived from the capture and checkpoint it now holds
        (rundir.chain: ok, unverified, STALE or BROKEN), computed once per loaded run."""
        return chain_status(self.path, self.analysis.derived_from)

    @property
    def condition(self) -> str:
        return str(self.analysis.run.get("condition") or self.config.get("condition") or "?")

    @property
    def group(self) -> "GroupKey":
        """What this run is a seed of (:func:`group_runs`): its model, preset and condition."""
        train = self.config.get("train") if isinstance(self.config.get("train"), dict) else {}
        model = train.get("model") or self.analysis.run.get("model")
        # seeds of one thing differ in their seed alone: a variant (another λ, ρ, layer count) is its own group
        variant = tuple(sorted((k, v) for k, v in train.items() if k not in ("seed", "model") and _hashable(v)))
        return GroupKey(model=None if model is None else str(model), preset=self.config.get("preset"),
                        condition=self.condition, variant=variant, reference=self.config.get("reference"))

    @property
    def origin(self) -> str | None:
        """What makes this run one training: a digest of its config.json (which holds its creation
        time), so a copy of a run (``cp -r``) has the same origin as the run; None without a config."""
        return config_hash(self.config) if self.config else None

    @property
    def summary(self) -> dict[str, float]:
        return self.analysis.summary

    @property
    def capture_dir(self) -> Path:
        return RunPaths(self.path).capture

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed", self.analysis.run.get("seed"))
        return seed if _is_int(seed) else None

    def ranks(self, split: str = "test", baseline: str | None = None) -> np.ndarray | None:
        """Per-user 1-based test-target ranks from metrics.json (of ``baseline``'s ranker if given), or None.

        ``test`` excludes each user's history items from the ranking, ``test_all`` does not; users
        are in the same fixed order for every run of a dataset, so two runs' arrays pair up.
        """
        source = (self.metrics or {}) if baseline is None else ((self.metrics or {}).get("baselines") or {}).get(baseline) or {}
        ranks = (source.get("ranks") or {}).get(split)
        return np.asarray(ranks, dtype=np.int64) if ranks else None

    def interval(self, metric: str):
        """A ``stats.Interval`` (95 %) for this run's ``metric``, or None where no spread was measured.

        Retrieval metrics (hr@K, ndcg@K, mrr) with per-user ranks in metrics.json: the percentile
        bootstrap over test users (estimate = the metric recomputed from the ranks). Otherwise the
        bootstrap over probes that ``analyze`` wrote to analysis.json ``intervals`` (estimate = the
        summary value).
        """
        from karma_probe.report import stats

        ranks = self.ranks("test")
        if ranks is not None and stats.is_rank_metric(metric):
            return stats.rank_metric_ci(ranks, metric)
        low, high = self.analysis.intervals.get(metric, (math.nan, math.nan))
        value = self.summary.get(metric, math.nan)
        if not all(math.isfinite(x) for x in (low, high, value)):
            return None
        return stats.Interval(value, low, high, 0, "bootstrap over probes (analysis.json intervals)")


@dataclass(frozen=True)
class GroupKey:
    """Runs pool as seeds only when all three agree: the same model (backbone, or the user's own
    checkpoint), the same preset and the same condition. Anything else is its own group."""

    model: str | None
    preset: str | None
    condition: str
    variant: tuple = ()  # the training config apart from seed and model, as sorted (field, value) pairs
    reference: str | None = None  # a reference run's kind: "step 0" | "untouched" (config.json "reference")

    def differences(self, others: Sequence["GroupKey"]) -> list[str]:
        """``field=value`` for each config field where this key differs from another of ``others``."""
        mine = dict(self.variant)
        fields = {k for o in others for k, v in dict(o.variant).items() if mine.get(k) != v}
        fields |= {k for o in others for k in mine if k not in dict(o.variant)}
        return [f"{k}={mine.get(k)}" for k in sorted(fields) if k in mine]


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """THE grouping of runs into seeds of one thing (:class:`GroupKey`), in first-seen order, every
    consumer's (the study table, the claims, the report, the dashboard, ``check --update-baseline``).

    Each group is named by its condition (``"karma"``) when no other group shares that condition;
    otherwise by the condition and what tells the groups apart (``"base (smollm2-135m)"``,
    ``"base (/models/mine)"``, ``"karma (smollm2-135m, preset x)"``), so two different models are
    never averaged into one "base (n=2)".
    """
    groups: dict[GroupKey, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    out: dict[str, list[Run]] = {}
    for key, rs in groups.items():
        label = _label(key)
        rivals = [k for k in groups if (k.reference or k.condition) == label and k != key]
        if not rivals:
            out[label] = rs
            continue
        parts = [str(key.model)] if any(k.model != key.model for k in rivals) else []
        if any(k.preset != key.preset for k in rivals if k.model == key.model):
            parts.append(f"preset {key.preset}")
        same = [k for k in rivals if k.model == key.model and k.preset == key.preset]
        if same:  # a variant of the same model and preset: name the config fields that differ
            parts += key.differences(same) or [f"preset {key.preset}"]
        out[f"{label} ({', '.join(parts)})"] = rs
    return out


def _label(key: GroupKey) -> str:
    """A group's name before any disambiguation: a reference is named for what it is ("step 0",
    "untouched"); a user's own model (condition ``model``) by its directory's name, ``+adapter``
    where one was merged; anything else by its condition."""
    from karma_probe.rundir.layout import MODEL

    if key.reference:
        return key.reference
    if key.condition == MODEL and key.model:
        adapter = dict(key.variant).get("adapter")
        return Path(key.model).name + (f"+{Path(str(adapter)).name}" if adapter else "")
    return key.condition


def _hashable(v) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def distinct(runs: Sequence[Run]) -> list[Run]:
    """``runs`` if no run is given twice, else BadInput naming both: the same directory by another
    spelling (``R``, ``R/``, ``./R``, a symlink: paths are resolved) or a copy of it (the same
    :attr:`Run.origin`). A run counted twice would pass as two seeds that agree exactly."""
    seen_path: dict[Path, Run] = {}
    seen_origin: dict[str, Run] = {}
    for r in runs:
        where = r.path.resolve()
        if where in seen_path:
            raise BadInput(f"{r.path}: the same run as {seen_path[where].path} (both are {where}); give each run once")
        if r.origin is not None and r.origin in seen_origin:
            raise BadInput(f"{r.path}: a copy of {seen_origin[r.origin].path} (the same config.json: one training, "
                           "not two seeds); give each run once")
        seen_path[where] = r
        if r.origin is not None:
            seen_origin[r.origin] = r
    return list(runs)


def run_dir(path: str | Path) -> Path:
    """The run directory for a user-given path (the dir itself, or its analysis.json)."""
    path = Path(path)
    if path.is_file() and path.name == layout.ANALYSIS:
        path = path.parent
    if not path.is_dir():
        raise BadInput(f"{path}: no such run directory")
    return path


def load_run(path: str | Path) -> Run:
    """Load and validate one run directory; ``BadInput`` names the file that is missing or malformed."""
    path = run_dir(path)
    return Run(path=path, name=path.name, analysis=read_analysis(path), config=load_config(path),
               metrics=load_metrics(path), train_log=load_train_log(path))


def load_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a run, {} when absent (rundir.read_config)."""
    return read_config(path)


def load_metrics(path: str | Path) -> dict[str, Any] | None:
    """``metrics.json`` of a run, checked, None when absent (rundir.read_metrics says what it holds)."""
    return read_metrics(path)


def load_train_log(path: str | Path) -> tuple[dict, ...]:
    """The logged steps; a last line cut short by a kill is dropped (rundir.read_train_log)."""
    return read_train_log(path)


def direction(runs: Sequence[Run], metric: str) -> bool | None:
    """``higher_is_better`` for ``metric`` as the first run that knows it declares it, else None."""
    return next((r.analysis.higher_is_better[metric] for r in runs if metric in r.analysis.higher_is_better), None)


# --------------------------------------------------------------------------- many runs

def confined(root: str | Path, path: str | Path) -> Path:
    """``path`` with every symlink resolved, if that lies inside ``root`` (resolved too); else BadInput.

    A server pointed at one runs root must not become a file browser: a symlinked run dir or file,
    or a user-given name like ``../other`` or ``/etc``, that leads outside is refused unopened.
    """
    try:
        base, target = Path(root).resolve(), Path(path).resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise BadInput(f"{path}: cannot be resolved ({e}); not read") from None
    if target != base and base not in target.parents:
        raise BadInput(f"{path}: resolves to {target}, outside the runs root {base}; not read")
    return target


def verdict(delta: float, higher_is_better: bool | None) -> str:
    """"better" / "worse" / "same" for a change ``delta`` of a metric with the declared direction;
    "" when the direction is unknown or the change is not a number."""
    if not math.isfinite(delta) or higher_is_better is None:
        return ""
    if delta == 0:
        return "same"
    return "better" if (delta > 0) == higher_is_better else "worse"


@dataclass(frozen=True)
class Change:
    """One headline metric of a run next to the reference run's."""

    value: float
    delta: float  # value - reference value; NaN where either is missing
    verdict: str  # verdict(delta, direction)


def changes(run: Run, reference: Run, metrics: Sequence[str], runs: Sequence[Run] = ()) -> dict[str, Change]:
    """``run``'s summary value of each of ``metrics`` and its change against ``reference``.

    The direction is the first declaration among ``reference``, ``run``, then ``runs``."""
    out = {}
    for metric in metrics:
        value = run.summary.get(metric, math.nan)
        delta = value - reference.summary.get(metric, math.nan)
        out[metric] = Change(value, delta, verdict(delta, direction([reference, run, *runs], metric)))
    return out


def metric_names(runs: Sequence[Run], per: str | None = None) -> list[str]:
    """Metric names in first-seen order: ``per=None`` those in the summaries, ``"layer"`` those
    with per-layer records (or per-head ones, which by_layer averages), ``"head"`` those with
    (layer, head) records."""
    if per is None:
        return list(dict.fromkeys(m for r in runs for m in r.summary))
    if per not in ("layer", "head"):
        raise ValueError(f"per must be None, 'layer' or 'head', got {per!r}")
    return list(dict.fromkeys(rec.metric for r in runs for rec in r.analysis.records
                              if rec.layer is not None and (per == "layer" or rec.head is not None)))


def decoded_side_by_side(runs: Sequence[Run]) -> list[dict[str, str | None]]:
    """``samples.decoded`` of several runs aligned on (history, truth), in first-seen order.

    One row per sample: ``{"history", "truth", <run name>: decoded text or None}``. Runs decoded
    on the same probe set (the seeded capture) line up row by row; others get their own rows.
    """
    rows: dict[tuple[str, str], dict[str, str | None]] = {}
    for run in runs:
        for s in run.analysis.samples.get("decoded") or []:
            key = (str(s.get("history", "")), str(s.get("truth", "")))
            row = rows.setdefault(key, {"history": key[0], "truth": key[1]} | {r.name: None for r in runs})
            row[run.name] = str(s.get("decoded", ""))
    return list(rows.values())

@dataclass(frozen=True)
class BrokenRun:
    path: Path
    name: str
    reason: str


@dataclass(frozen=True)
class RunListing:
    ok: tuple[Run, ...]
    broken: tuple[BrokenRun, ...]


def list_runs(root: str | Path, *, confine: bool = False) -> RunListing:
    """Every run dir directly under ``root``, loaded or with the reason it cannot be.

    Hidden directories are skipped: they are atomic writes in progress (rundir.atomic_dir).
    ``confine=True`` is for a server that must read nothing outside ``root`` (the dashboard): a run
    dir, or one of its RUN_FILES, that resolves outside it (a symlink) is listed as broken unopened.
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"{root}: no such runs directory")
    ok, broken = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            if confine:  # before the marker check below, which would already look behind the link
                confined(root, d)
                for name in RUN_FILES:
                    if (d / name).is_symlink() or (d / name).exists():
                        confined(root, d / name)
        except BadInput as e:
            broken.append(BrokenRun(path=d, name=d.name, reason=str(e)))
            continue
        if not any((d / m).exists() for m in RUN_MARKERS):
            continue
        try:
            run = load_run(d)
        except BadInput as e:
            broken.append(BrokenRun(path=d, name=d.name, reason=str(e)))
            continue
        twin = next((o for o in ok if o.path.resolve() == run.path.resolve()
                     or (run.origin is not None and o.origin == run.origin)), None)
        if twin is not None:  # a symlink to, or a copy of, a run already listed: not a second seed
            broken.append(BrokenRun(path=d, name=d.name, reason=f"the same run as {twin.name} (a symlink or a copy "
                                                                 "of it); listed once"))
        elif run.chain.state == "broken":  # its capture is damaged: the numbers cannot be traced to anything
            broken.append(BrokenRun(path=d, name=d.name, reason=str(run.chain)))
        else:
            ok.append(run)  # a STALE run stays listed, marked by run.chain
    return RunListing(ok=tuple(ok), broken=tuple(broken))


# --------------------------------------------------------------------------- captures


def load_maps(run: Run | str | Path) -> tuple[ProbeMap, ...]:
    """The probes in ``capture/maps.safetensors``, ordered by probe index (rundir.read_maps)."""
    return read_maps(_capture_dir(run))


def map_labels(run: Run | str | Path, probe: ProbeMap) -> list[str]:
    """Axis labels of a probe's map: the item titles of a continuous run, else decoded tokens."""
    return list(probe.labels) if probe.labels else decode_tokens(run, probe.input_ids)


def load_hidden(run: Run | str | Path) -> Hidden:
    """``capture/hidden.safetensors``, checked (rundir.read_hidden)."""
    return read_hidden(_capture_dir(run))


def _capture_dir(run: Run | str | Path) -> Path:
    return run.capture_dir if isinstance(run, Run) else RunPaths(run_dir(run)).capture


def decode_tokens(run: Run | str | Path, ids) -> list[str]:
    """Readable labels for token ids, from the run's own tokenizer (``checkpoint/tokenizer.json``).

    Uses the ``tokenizers`` library (no torch). Without a tokenizer the ids themselves are the
    labels, so a figure is still drawn for a run copied without its checkpoint.
    """
    base = run.path if isinstance(run, Run) else run_dir(run)
    ids = [int(i) for i in ids]
    tokenizer_file = RunPaths(base).tokenizer
    if not tokenizer_file.is_file():
        return [str(i) for i in ids]
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_file))
    except Exception:  # noqa: BLE001 - tokenizers raises bare Exception for a bad file; labels only
        return [str(i) for i in ids]
    return [tok.decode([i]).replace("\n", "\\n") or f"<{i}>" for i in ids]
