"""The capture library's side of ``RUN/capture/``: merging shards, and the format's names re-exported.

The format itself (the one :class:`~karma_probe.rundir.capture.Capture` class, its atomic write,
its checked read, the manifest) lives in :mod:`karma_probe.rundir.capture`; it is re-exported here
so the capture library has one import for what it writes.

Captures of disjoint shards of one probe set merge exactly: statistics add (maxima take the
max, per-probe rows concatenate: :func:`karma_probe.capture.reducers.merge`), hidden states
concatenate in shard order, full maps keep their global probe numbers.
"""

from __future__ import annotations

import numpy as np

from karma_probe.capture.probes import SETS
from karma_probe.core.errors import BadInput
from karma_probe.rundir.capture import Capture


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
        if other.manifest.get("derived_from") != first.manifest.get("derived_from"):  # rundir.chain
            raise BadInput(f"cannot merge captures of different checkpoints ({first.path} and {other.path} record "
                           "different checkpoint fingerprints: one was captured before a re-training)")
    stats = first.torch("stats")  # the reducers' merge is torch, like the reducers
    for other in captures[1:]:
        stats = merge(stats, other.torch("stats"))

    maps: dict[str, np.ndarray] = {}
    for cap in captures:
        clash = sorted(set(maps) & set(cap.maps))
        if clash:
            raise BadInput(f"cannot merge: two captures both hold full map {clash[0]} (overlapping shards?)")
        maps |= cap.maps

    hidden = {}
    for key in ("marker_hidden", "interest", "targets", *(f"{name}_hidden" for name in SETS if name != "history")):
        parts = [c.hidden[key] for c in captures if key in c.hidden]
        if parts:
            hidden[key] = np.concatenate(parts)
    items = [c.hidden["items"] for c in captures if "items" in c.hidden]
    if items:
        if any(not np.array_equal(items[0], x) for x in items[1:]):
            raise BadInput("cannot merge: the captures' item embeddings differ (different checkpoints?)")
        hidden["items"] = items[0]

    manifest = dict(first.manifest)
    manifest["backend"] = "+".join(dict.fromkeys(c.manifest.get("backend", "?") for c in captures))
    manifest["probes"] = _merge_probes([c.manifest.get("probes", {}) for c in captures])
    manifest["merged_from"] = len(captures)
    return Capture(manifest, stats, maps, hidden)


def _merge_probes(parts: list[dict]) -> dict:
    """Probe-set descriptions of shards → one: per-probe lists concatenate, counts add."""
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
