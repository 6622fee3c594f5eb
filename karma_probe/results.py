"""Read a finished run directory back as plain data, for the report, the dashboard and the CI gate.

Everything here is JSON, safetensors (through ``safetensors.numpy``) and numpy, never torch, so
``karma-probe check`` installs light and the dashboard starts fast. The layouts are the ones in
checkpoints.md; anything that does not match is a ``BadInput`` that names the file and the field,
because a run dir is produced by other commands and a user needs to know which one to re-run.

``load_run`` needs ``analysis.json`` (what every consumer here shows) and reads ``config.json``,
``metrics.json`` and ``train_log.jsonl`` when they are there (a reference ``base`` run has no
training log). ``list_runs`` never raises for one bad run: it sorts a runs root into the runs that
load and the ones that do not, with the reason, so a listing of many runs survives one killed job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from karma_probe.analyzers.catalogue import format_delta, format_value  # noqa: F401  (re-exported: one way to print)
from karma_probe.errors import BadInput
from karma_probe.rundir import read_json, read_jsonl

SCHEMA = "karma_probe.analysis/1"

# Files whose presence makes a directory a run dir (a half-written one is still a run: broken).
RUN_MARKERS = ("analysis.json", "config.json", "train_log.jsonl", "checkpoint")


# --------------------------------------------------------------------------- analysis.json

@dataclass(frozen=True)
class Record:
    """One tidy analysis number; ``layer`` / ``head`` are None where it is not per layer / head."""

    metric: str
    value: float  # NaN where the analyzer wrote null
    layer: int | None = None
    head: int | None = None


@dataclass(frozen=True)
class Analysis:
    """The content of ``analysis.json`` (checkpoints.md, "Analysis")."""

    run: dict[str, Any]
    records: tuple[Record, ...]
    summary: dict[str, float]
    higher_is_better: dict[str, bool]
    samples: dict[str, Any] = field(default_factory=dict)
    trajectory: tuple[dict, ...] = ()  # ({"step": int, "summary": {metric: float}}, ...)
    # 95 % bootstrap CI over probes of one run's metric: {metric: (low, high)}; {} when not written
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def by_layer(self, metric: str) -> dict[int, float]:
        """``metric`` per layer: the per-layer records if any, else the mean of its per-head records."""
        per_layer = {r.layer: r.value for r in self.records
                     if r.metric == metric and r.layer is not None and r.head is None}
        if per_layer:
            return dict(sorted(per_layer.items()))
        heads: dict[int, list[float]] = {}
        for r in self.records:
            if r.metric == metric and r.layer is not None and r.head is not None:
                heads.setdefault(r.layer, []).append(r.value)
        return {layer: float(np.mean(v)) for layer, v in sorted(heads.items())}

    def by_layer_head(self, metric: str) -> np.ndarray | None:
        """``metric`` as a ``[layers, heads]`` matrix (NaN where a cell has no record), or None."""
        cells = [r for r in self.records if r.metric == metric and r.layer is not None and r.head is not None]
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
    run = _expect(obj.get("run", {}), dict, f"{where}: 'run'")
    records = tuple(_record(r, f"{where}: records[{i}]")
                    for i, r in enumerate(_expect(obj["records"], list, f"{where}: 'records'")))
    summary = _numbers(obj["summary"], f"{where}: summary")
    hib = _expect(obj["higher_is_better"], dict, f"{where}: 'higher_is_better'")
    for k, v in hib.items():
        if not isinstance(v, bool):
            raise BadInput(f"{where}: higher_is_better[{k!r}] must be true or false, got {v!r}")
    samples = _expect(obj.get("samples") or {}, dict, f"{where}: 'samples'")
    decoded = _expect(samples.get("decoded", []), list, f"{where}: samples.decoded")
    for i, s in enumerate(decoded):
        _expect(s, dict, f"{where}: samples.decoded[{i}]")
    trajectory = []
    for i, t in enumerate(_expect(obj.get("trajectory") or [], list, f"{where}: 'trajectory'")):
        t = _expect(t, dict, f"{where}: trajectory[{i}]")
        if not _is_int(t.get("step")):
            raise BadInput(f"{where}: trajectory[{i}].step must be an integer, got {t.get('step')!r}")
        trajectory.append({"step": t["step"], "summary": _numbers(t.get("summary", {}), f"{where}: trajectory[{i}].summary")})
    intervals = {}
    for metric, pair in _expect(obj.get("intervals") or {}, dict, f"{where}: 'intervals'").items():
        if not isinstance(pair, list) or len(pair) != 2:
            raise BadInput(f"{where}: intervals[{metric!r}] must be [low, high], got {pair!r}")
        low, high = (_number(v, f"{where}: intervals[{metric!r}]") for v in pair)
        if low > high:
            raise BadInput(f"{where}: intervals[{metric!r}] has low {low} > high {high}")
        intervals[metric] = (low, high)
    return Analysis(run=run, records=records, summary=summary, higher_is_better=dict(hib),
                    samples=samples, trajectory=tuple(sorted(trajectory, key=lambda t: t["step"])),
                    intervals=intervals)


def _record(r: Any, where: str) -> Record:
    r = _expect(r, dict, where)
    if not isinstance(r.get("metric"), str) or not r["metric"]:
        raise BadInput(f"{where}.metric must be a non-empty string, got {r.get('metric')!r}")
    for axis in ("layer", "head"):
        if r.get(axis) is not None and not (_is_int(r[axis]) and r[axis] >= 0):
            raise BadInput(f"{where}.{axis} must be a non-negative integer or null, got {r[axis]!r}")
    return Record(metric=r["metric"], value=_number(r.get("value"), f"{where}.value"),
                  layer=r.get("layer"), head=r.get("head"))


def _numbers(d: Any, where: str) -> dict[str, float]:
    d = _expect(d, dict, where)
    return {k: _number(v, f"{where}[{k!r}]") for k, v in d.items()}


def _number(v: Any, where: str) -> float:
    if v is None:
        return math.nan  # an analyzer that could not compute a value writes null
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadInput(f"{where} must be a number or null, got {v!r}")
    return float(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _expect(v: Any, kind: type, where: str):
    if not isinstance(v, kind):
        raise BadInput(f"{where} must be a JSON {'object' if kind is dict else 'array'}, got {type(v).__name__}")
    return v


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

    @property
    def condition(self) -> str:
        return str(self.analysis.run.get("condition") or self.config.get("condition") or "?")

    @property
    def summary(self) -> dict[str, float]:
        return self.analysis.summary

    @property
    def capture_dir(self) -> Path:
        return self.path / "capture"

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
        from karma_probe import stats

        ranks = self.ranks("test")
        if ranks is not None and stats.is_rank_metric(metric):
            return stats.rank_metric_ci(ranks, metric)
        low, high = self.analysis.intervals.get(metric, (math.nan, math.nan))
        value = self.summary.get(metric, math.nan)
        if not all(math.isfinite(x) for x in (low, high, value)):
            return None
        return stats.Interval(value, low, high, 0, "bootstrap over probes (analysis.json intervals)")


def run_dir(path: str | Path) -> Path:
    """The run directory for a user-given path (the dir itself, or its analysis.json)."""
    path = Path(path)
    if path.is_file() and path.name == "analysis.json":
        path = path.parent
    if not path.is_dir():
        raise BadInput(f"{path}: no such run directory")
    return path


def load_run(path: str | Path) -> Run:
    """Load and validate one run directory; ``BadInput`` names the file that is missing or malformed."""
    path = run_dir(path)
    analysis_file = path / "analysis.json"
    if not analysis_file.is_file():
        raise BadInput(f"{analysis_file}: not found (run `karma-probe analyze {path}` first)")
    analysis = parse_analysis(read_json(analysis_file, "analysis file"), str(analysis_file))
    return Run(path=path, name=path.name, analysis=analysis, config=load_config(path),
               metrics=load_metrics(path), train_log=load_train_log(path))


def load_config(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "config.json"
    if not f.exists():
        return {}
    return _expect(read_json(f, "run config"), dict, str(f))


def load_metrics(path: str | Path) -> dict[str, Any] | None:
    """``metrics.json``: ``{"valid": {...}, "test": {...}, "test_all": {...}, "random": {...}, "n_items",
    "n_users"}``, and where training wrote them ``"ranks": {"test": [int], "test_all": [int]}`` and
    ``"baselines": {"popularity": {"test": {...}, "test_all": {...}, "ranks": {...}}, ...}``."""
    f = Path(path) / "metrics.json"
    if not f.exists():
        return None
    obj = _expect(read_json(f, "retrieval metrics"), dict, str(f))
    for split in ("valid", "test", "test_all", "random"):
        if split in obj:
            obj[split] = _numbers(obj[split], f"{f}: {split}")
    if "ranks" in obj:
        obj["ranks"] = _ranks(obj["ranks"], f"{f}: ranks")
    for name, b in _expect(obj.get("baselines") or {}, dict, f"{f}: baselines").items():
        b = _expect(b, dict, f"{f}: baselines.{name}")
        for split in ("test", "test_all"):
            if split in b:
                b[split] = _numbers(b[split], f"{f}: baselines.{name}.{split}")
        if "ranks" in b:
            b["ranks"] = _ranks(b["ranks"], f"{f}: baselines.{name}.ranks")
    return obj


def _ranks(d: Any, where: str) -> dict[str, list[int]]:
    d = _expect(d, dict, where)
    for split, ranks in d.items():
        if not isinstance(ranks, list) or not all(_is_int(r) and r >= 1 for r in ranks):
            raise BadInput(f"{where}.{split} must be a list of 1-based integer ranks")
    return d


def load_train_log(path: str | Path) -> tuple[dict, ...]:
    """The logged steps; a last line cut short by a kill is dropped (rundir.read_jsonl)."""
    f = Path(path) / "train_log.jsonl"
    rows = read_jsonl(f)
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not _is_int(row.get("step")):
            raise BadInput(f"{f}: line {i + 1} is not a logged step (an object with an integer 'step')")
    return tuple(rows)


def direction(runs: Sequence[Run], metric: str) -> bool | None:
    """``higher_is_better`` for ``metric`` as the first run that knows it declares it, else None."""
    return next((r.analysis.higher_is_better[metric] for r in runs if metric in r.analysis.higher_is_better), None)


# --------------------------------------------------------------------------- many runs

# What load_run reads of a run dir; a confined listing checks each before anything is opened.
RUN_FILES = ("analysis.json", "config.json", "metrics.json", "train_log.jsonl")


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
            ok.append(load_run(d))
        except BadInput as e:
            broken.append(BrokenRun(path=d, name=d.name, reason=str(e)))
    return RunListing(ok=tuple(ok), broken=tuple(broken))


# --------------------------------------------------------------------------- captures

@dataclass(frozen=True, eq=False)
class ProbeMap:
    """Full attention maps of one captured probe."""

    index: int
    attn: np.ndarray       # [L, H, T, T] float32, rows = queries
    input_ids: np.ndarray  # [T] int64: token ids, or item indices for a continuous-interface run
    labels: tuple[str, ...] | None = None  # axis labels the capture wrote (item titles), else None


@dataclass(frozen=True, eq=False)
class Hidden:
    """``capture/hidden.safetensors``: the embedding sets the geometry figures use."""

    marker_hidden: np.ndarray  # [N, L+1, d] hidden state at the interest marker, every layer
    interest: np.ndarray       # [N, e] L2-normed interest embeddings
    items: np.ndarray          # [n_items, e] L2-normed item embeddings
    targets: np.ndarray        # [N] int64 target item index


def load_maps(run: Run | str | Path) -> tuple[ProbeMap, ...]:
    """The probes in ``capture/maps.safetensors``, ordered by probe index."""
    f = _capture_file(run, "maps.safetensors")
    tensors = _read_safetensors(f, "attention maps")
    probes: dict[int, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = re.fullmatch(r"probe(\d+)\.(attn|input_ids)", key)
        if m:
            probes.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if not probes:
        raise BadInput(f"{f}: no probe{{k}}.attn tensors")
    manifest = f.parent / "manifest.json"
    meta = read_json(manifest, "capture manifest") if manifest.is_file() else {}
    map_labels = (meta.get("map_labels") or {}) if isinstance(meta, dict) else {}
    out = []
    for k, parts in sorted(probes.items()):
        if set(parts) != {"attn", "input_ids"}:
            raise BadInput(f"{f}: probe{k} has {sorted(parts)}, needs both attn and input_ids")
        attn, ids = parts["attn"], parts["input_ids"]
        if attn.ndim != 4 or ids.ndim != 1 or attn.shape[2:] != (len(ids), len(ids)):
            raise BadInput(f"{f}: probe{k}.attn has shape {list(attn.shape)} and input_ids {list(ids.shape)}; "
                           "expected [L, H, T, T] and [T]")
        labels = map_labels.get(f"probe{k}")
        labels = tuple(str(x) for x in labels) if isinstance(labels, list) and len(labels) == len(ids) else None
        out.append(ProbeMap(index=k, attn=attn, input_ids=ids, labels=labels))
    return tuple(out)


def map_labels(run: Run | str | Path, probe: ProbeMap) -> list[str]:
    """Axis labels of a probe's map: the item titles of a continuous run, else decoded tokens."""
    return list(probe.labels) if probe.labels else decode_tokens(run, probe.input_ids)


def load_hidden(run: Run | str | Path) -> Hidden:
    f = _capture_file(run, "hidden.safetensors")
    t = _read_safetensors(f, "hidden states")
    want = {"marker_hidden": 3, "interest": 2, "items": 2, "targets": 1}
    for key, ndim in want.items():
        if key not in t:
            raise BadInput(f"{f}: missing tensor {key!r}")
        if t[key].ndim != ndim:
            raise BadInput(f"{f}: {key} has shape {list(t[key].shape)}, expected {ndim} dimensions")
    n = len(t["interest"])
    if len(t["marker_hidden"]) != n or len(t["targets"]) != n or t["items"].shape[1] != t["interest"].shape[1]:
        raise BadInput(f"{f}: shapes disagree: marker_hidden {list(t['marker_hidden'].shape)}, "
                       f"interest {list(t['interest'].shape)}, items {list(t['items'].shape)}, "
                       f"targets {list(t['targets'].shape)}")
    return Hidden(**{k: t[k] for k in want})


def _capture_file(run: Run | str | Path, name: str) -> Path:
    base = run.path if isinstance(run, Run) else run_dir(run)
    return base / "capture" / name


def _read_safetensors(f: Path, what: str) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not f.is_file():
        raise BadInput(f"{f}: {what} not found (run `karma-probe capture` for this run)")
    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError) as e:
        raise BadInput(f"{f}: unreadable {what} (truncated or not safetensors: {e})") from None


def decode_tokens(run: Run | str | Path, ids) -> list[str]:
    """Readable labels for token ids, from the run's own tokenizer (``checkpoint/tokenizer.json``).

    Uses the ``tokenizers`` library (no torch). Without a tokenizer the ids themselves are the
    labels, so a figure is still drawn for a run copied without its checkpoint.
    """
    base = run.path if isinstance(run, Run) else run_dir(run)
    ids = [int(i) for i in ids]
    tokenizer_file = base / "checkpoint" / "tokenizer.json"
    if not tokenizer_file.is_file():
        return [str(i) for i in ids]
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_file))
    except Exception:  # noqa: BLE001 - tokenizers raises bare Exception for a bad file; labels only
        return [str(i) for i in ids]
    return [tok.decode([i]).replace("\n", "\\n") or f"<{i}>" for i in ids]
