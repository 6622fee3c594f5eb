"""The capture directory (``RUN/capture/``, format in checkpoints.md): write, read, merge.

A capture is written into a temporary sibling directory and swapped in only when every file is
complete (``rundir.atomic_dir``), so a failed capture never leaves a half-written ``capture/``
behind and never destroys the previous one. ``manifest.json`` names every tensor file, key,
shape and dtype, so readers can check what they get without loading tensors.

Captures of disjoint shards of one probe set merge exactly: statistics add (maxima take the
max), hidden states concatenate in shard order, full maps keep their global probe numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from karma_probe.errors import BadInput
from karma_probe.rundir import atomic_dir, load_tensors, read_json, save_tensors, write_json

SCHEMA = "karma_probe.capture/1"
FILES = ("stats", "maps", "hidden")  # → stats.safetensors, maps.safetensors, hidden.safetensors
MANIFEST = "manifest.json"


@dataclass
class Capture:
    manifest: dict  # everything but "files" (which write_capture derives from the tensors)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    hidden: dict[str, torch.Tensor] = field(default_factory=dict)


def _describe(tensors: dict[str, torch.Tensor]) -> dict:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in sorted(tensors.items())}


def check_target(directory: str | Path) -> Path:
    """A capture may replace an earlier capture or an empty directory, never anything else."""
    directory = Path(directory)
    if directory.exists() and not (directory / MANIFEST).is_file() and (
            not directory.is_dir() or any(directory.iterdir())):
        # write_capture swaps the whole directory: never let that be a run directory
        raise BadInput(f"{directory}: exists and is not a capture directory; refusing to replace it")
    return directory


def write_capture(directory: str | Path, capture: Capture) -> Path:
    """Atomically (re)write ``directory`` with the three tensor files and the manifest."""
    directory = check_target(directory)
    manifest = {"schema": SCHEMA, **{k: v for k, v in capture.manifest.items() if k not in ("schema", "files")}}
    manifest["files"] = {f"{name}.safetensors": _describe(getattr(capture, name)) for name in FILES}
    with atomic_dir(directory) as tmp:
        for name in FILES:
            save_tensors(tmp / f"{name}.safetensors", getattr(capture, name), metadata={"schema": SCHEMA})
        write_json(tmp / MANIFEST, manifest)
    return directory


def capture_dir(path: str | Path) -> Path:
    """A capture directory, or a run directory holding one in ``capture/``."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if (path / "capture" / MANIFEST).is_file():
        return path / "capture"
    raise BadInput(f"{path}: no capture here (run `karma-probe capture {path}` first)")


def read_capture(path: str | Path) -> Capture:
    """Read a capture (or a run dir's capture) and check it against its manifest."""
    directory = capture_dir(path)
    manifest = read_json(directory / MANIFEST, "capture manifest")
    if manifest.get("schema") != SCHEMA:
        raise BadInput(f"{directory / MANIFEST}: schema {manifest.get('schema')!r}, expected {SCHEMA!r}")
    cap = Capture({k: v for k, v in manifest.items() if k != "files"})
    for name in FILES:
        file = f"{name}.safetensors"
        tensors = load_tensors(directory / file, f"capture {name} file")
        if _describe(tensors) != manifest.get("files", {}).get(file):
            raise BadInput(f"{directory / file}: keys or shapes differ from {MANIFEST}")
        setattr(cap, name, tensors)
    return cap


def merge_captures(captures: list[Capture]) -> Capture:
    """One capture equal to capturing the union of the shards' (disjoint) probes in one go."""
    from karma_probe.capture.reducers import merge

    if len(captures) < 2:
        raise BadInput("merge needs at least two captures")
    first = captures[0]
    for other in captures[1:]:
        if other.manifest.get("model") != first.manifest.get("model"):
            raise BadInput("cannot merge captures of different models "
                           f"({first.manifest.get('model')} vs {other.manifest.get('model')})")
    stats = first.stats
    for other in captures[1:]:
        stats = merge(stats, other.stats)

    maps: dict[str, torch.Tensor] = {}
    for cap in captures:
        clash = sorted(set(maps) & set(cap.maps))
        if clash:
            raise BadInput(f"cannot merge: two captures both hold full map {clash[0]} (overlapping shards?)")
        maps |= cap.maps

    hidden = {}
    for key in ("marker_hidden", "interest", "targets"):
        parts = [c.hidden[key] for c in captures if key in c.hidden]
        if parts:
            hidden[key] = torch.cat(parts)
    items = [c.hidden["items"] for c in captures if "items" in c.hidden]
    if items:
        if any(not torch.equal(items[0], x) for x in items[1:]):
            raise BadInput("cannot merge: the captures' item embeddings differ (different checkpoints?)")
        hidden["items"] = items[0]

    manifest = dict(first.manifest)
    manifest["backend"] = "+".join(dict.fromkeys(c.manifest.get("backend", "?") for c in captures))
    manifest["probes"] = _merge_probes([c.manifest.get("probes", {}) for c in captures])
    manifest["merged_from"] = len(captures)
    return Capture(manifest, stats, maps, hidden)


def _merge_probes(parts: list[dict]) -> dict:
    """Probe-set descriptions of shards → one: per-probe lists concatenate, counts add."""
    from karma_probe.capture.probes import SETS

    out = {k: v for k, v in parts[0].items() if k not in (*SETS, "shard", "count")}
    out["max_len"] = max(p.get("max_len", 0) for p in parts)
    for name in SETS:
        acc = {"count": 0, "truncated": 0}
        for p in parts:
            for key, value in p.get(name, {}).items():
                if isinstance(value, list):
                    acc.setdefault(key, []).extend(value)
                elif key in ("count", "truncated"):
                    acc[key] += value
        ident = acc.get("users") if name == "history" else acc.get("texts")
        if ident and len(set(ident)) < len(ident):
            raise BadInput(f"cannot merge: the captures share {name} probes (overlapping shards?)")
        out[name] = acc
    out["count"] = sum(out[name]["count"] for name in SETS)
    return out
