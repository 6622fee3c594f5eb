"""The capture directory (``RUN/capture/``, checkpoints.md "Capture") and the one :class:`Capture` class.

A capture is a manifest (JSON) and three dicts of arrays, one safetensors file each: ``stats``
(pooled and per-probe attention / residual statistics), ``maps`` (full attention maps of a few
probes) and ``hidden`` (marker hidden states, interest and item embeddings, targets). Arrays are
stored as numpy, so the analyzers, the report and the dashboard read captures without torch; the
capture library computes them in torch, hands tensors to the constructor (converted) and gets
tensors back from :meth:`Capture.torch`.

- write: :func:`write_capture` swaps the whole directory in at once (``io.atomic_dir``), its
  manifest listing every file, key, shape and dtype
- read: :func:`read_capture` (all parts or some; checks the schema and each file against the
  manifest); :meth:`Capture.load` is the analyzers' read: stats and hidden states, checked
  against the checkpoint they will be analyzed with (:func:`check_fingerprint`, :func:`check_step`)
- the figures' typed views: :func:`read_maps`, :func:`read_hidden` (no manifest needed, so a
  capture copied without one still draws)

Merging shards is capture-library logic (which statistics add, which take a max), so it lives in
``karma_probe.capture.writer.merge_captures``, built on this class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from karma_probe.core.errors import BadInput
from karma_probe.rundir.io import atomic_dir, load_arrays, read_json, save_arrays, write_json
from karma_probe.rundir.layout import (CAPTURE, CAPTURE_PARTS, CAPTURE_SCHEMA, CONFIG, HEADLINE_SETS, HIDDEN_FILE,
                                       MANIFEST, MAPS_FILE, PROBE_SETS, STATS_FILE, part_file)
from karma_probe.rundir.run import read_state

SCHEMA = CAPTURE_SCHEMA
# how each part is named in an error message
PART_WHAT = {"stats": "capture stats", "maps": "attention maps", "hidden": "hidden states"}
# hidden.safetensors: key → number of dimensions ([N, L+1, d], [N, e], [n_items, e], [N]); besides
# these, "{set}_hidden" [N_set, L+1, d] holds the last-token states of the text / user probes
HIDDEN_KEYS = {"marker_hidden": 3, "interest": 2, "items": 2, "targets": 1}
# manifest "model" key → HF config.json key(s) it must equal
FINGERPRINT = {"layers": ("num_hidden_layers", "n_layer"), "heads": ("num_attention_heads", "n_head"),
               "kv_heads": ("num_key_value_heads",), "width": ("hidden_size", "n_embd"), "vocab": ("vocab_size",)}
_RECAPTURE = "re-run `karma-probe capture`"


class Capture:
    """One capture: ``manifest`` (without ``files``, which the writer derives) and the arrays of
    its three parts, ``stats`` / ``maps`` / ``hidden`` (``{key: numpy array}``).

    ``path`` is where it was read from (None for one built in memory); error messages name it.
    The parts may be given as torch tensors: they are converted (sharing memory where possible).
    """

    def __init__(self, manifest: dict, stats: dict | None = None, maps: dict | None = None,
                 hidden: dict | None = None, *, path: str | Path | None = None):
        self.manifest = {k: v for k, v in manifest.items() if k != "files"}
        self.stats = _numpy(stats)
        self.maps = _numpy(maps)
        self.hidden = _numpy(hidden)
        self.path = Path(path) if path is not None else None

    def __repr__(self) -> str:
        sizes = ", ".join(f"{part} {len(getattr(self, part))} keys" for part in CAPTURE_PARTS)
        return f"Capture({str(self.path) if self.path else 'in memory'}: {sizes})"

    def torch(self, part: str) -> dict:
        """A part (``"stats"``, ``"maps"`` or ``"hidden"``) as torch tensors, sharing memory with the arrays."""
        import torch

        if part not in CAPTURE_PARTS:
            raise ValueError(f"unknown capture part {part!r}; parts: {CAPTURE_PARTS}")
        return {k: torch.from_numpy(v) for k, v in getattr(self, part).items()}

    @classmethod
    def load(cls, path: str | Path, checkpoint: str | Path | None = None) -> "Capture":
        """What the analyzers read: stats and hidden states (not the maps), validated. With
        ``checkpoint``, a capture of another model or another step is refused."""
        cap = read_capture(path, ("stats", "hidden"), checkpoint=checkpoint)
        cap.validate()
        return cap

    def where(self, file: str) -> str:
        """A file of this capture, as error messages name it."""
        return str(self.path / file) if self.path is not None else f"(in-memory capture) {file}"

    def validate(self) -> None:
        """What every analyzer relies on: per-head stats of the manifest's model shape, the hidden
        states (:data:`HIDDEN_KEYS`) in agreeing counts, and at least 2 probes in the headline set
        (history; for a model captured without a dataset, its user or text probes)."""
        fp = self.manifest.get("model") or {}
        L, H = fp.get("layers"), fp.get("heads")
        for name in self.sets():
            for key in ("attn.first_mass_sum", "attn.entropy_sum", "attn.key_conc_sum"):
                if f"{name}.{key}" not in self.stats:
                    raise BadInput(f"{self.where(STATS_FILE)}: missing {name}.{key} ({_RECAPTURE})")
                shape = self.stats[f"{name}.{key}"].shape
                if L is not None and H is not None and shape != (L, H):
                    raise BadInput(f"{self.where(STATS_FILE)}: {name}.{key} has shape {list(shape)}, "
                                   f"the manifest's model has {L} layers × {H} heads")
        check_hidden(self.hidden, self.where(HIDDEN_FILE))
        n = len(self.hidden["interest"])
        if n and "history.attn.first_mass_sum" not in self.stats:
            raise BadInput(f"{self.where(STATS_FILE)}: no history-probe statistics (history.attn.*) for its {n} "
                           f"history probes ({_RECAPTURE})")
        headline = self.headline_set()
        if headline != "history":  # a model captured without a dataset: its headline set's probe count
            count = self.stats.get(f"{headline}.attn.probes")
            n = int(count.reshape(-1)[0]) if count is not None else 0
        if n < 2:
            raise BadInput(f"{self.where(HIDDEN_FILE)}: {n} {headline} probe(s); the analyzers need at least 2")

    # ----------------------------------------------------------------- reading the manifest

    def sets(self) -> list[str]:
        """Probe sets with attention stats, headline set first (:meth:`headline_set`)."""
        names = [s for s in PROBE_SETS if f"{s}.attn.first_mass_sum" in self.stats]
        if not names:
            raise BadInput(f"{self.where(STATS_FILE)}: no probe-set statistics ({', '.join(PROBE_SETS)}.attn.*)")
        head = self.headline_set()
        return [head] + [s for s in names if s != head]

    def headline_set(self) -> str:
        """The set the headline numbers are taken on: history (the task's prompts) if captured,
        else the user's own prompts, else the general passages (:data:`HEADLINE_SETS`)."""
        found = [s for s in HEADLINE_SETS if f"{s}.attn.first_mass_sum" in self.stats]
        if not found:
            raise BadInput(f"{self.where(STATS_FILE)}: no probe-set statistics ({', '.join(PROBE_SETS)}.attn.*)")
        return found[0]

    def last_hidden(self, name: str) -> np.ndarray | None:
        """[N, L+1, d] hidden state at the last token of each probe of set ``name``, every residual
        index (history: the interest marker), or None where the capture did not keep it."""
        return self.hidden.get("marker_hidden" if name == "history" else f"{name}_hidden")

    def set_stats(self, name: str) -> dict[str, np.ndarray]:
        """The stats of one probe set, keys without the set prefix (``attn.first_mass_sum``, ...)."""
        prefix = name + "."
        return {k[len(prefix):]: v for k, v in self.stats.items() if k.startswith(prefix)}

    def history_texts(self) -> list[str]:
        """The history probes' prompts, in capture order (from the manifest's probe set)."""
        probes = self.manifest.get("probes", {})
        texts = None
        if isinstance(probes, dict):
            texts = probes.get("history") or (probes.get("texts") or {}).get("history")
        if isinstance(texts, dict):
            texts = texts.get("texts")
        if not isinstance(texts, list) or len(texts) != len(self.hidden["targets"]):
            raise BadInput(f"{self.where(MANIFEST)}: probes.history does not list the "
                           f"{len(self.hidden['targets'])} history probe texts")
        return [t["text"] if isinstance(t, dict) else str(t) for t in texts]

    def users(self) -> list[str]:
        """The history probes' users, in capture order (the manifest's ``probes.history.users``)."""
        probes = self.manifest.get("probes", {})
        users = (probes.get("history") or {}).get("users") if isinstance(probes, dict) else None
        if not isinstance(users, list) or len(users) != len(self.hidden["targets"]):
            raise BadInput(f"{self.where(MANIFEST)}: probes.history.users does not list the "
                           f"{len(self.hidden['targets'])} probe users (a capture from an older version? "
                           f"{_RECAPTURE})")
        return [str(u) for u in users]

    def max_items(self) -> int | None:
        """History items per probe (the manifest's ``probes.max_items``), None when not recorded."""
        probes = self.manifest.get("probes", {})
        return probes.get("max_items") if isinstance(probes, dict) else None


def _numpy(arrays: dict | None) -> dict[str, np.ndarray]:
    out = {}
    for k, v in (arrays or {}).items():
        if hasattr(v, "detach"):  # a torch tensor (not imported here: reading needs no torch)
            v = v.detach().cpu().numpy()
        out[k] = np.asarray(v)
    return out


def describe(arrays: dict[str, np.ndarray]) -> dict:
    """The manifest's ``files`` entry of one part: ``{key: {"shape": [...], "dtype": "float32"}}``, sorted."""
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in sorted(arrays.items())}


# --------------------------------------------------------------------------- write / read


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
    manifest["files"] = {part_file(part): describe(getattr(capture, part)) for part in CAPTURE_PARTS}
    with atomic_dir(directory) as tmp:
        for part in CAPTURE_PARTS:
            save_arrays(tmp / part_file(part), getattr(capture, part), metadata={"schema": SCHEMA})
        write_json(tmp / MANIFEST, manifest)
    return directory


def capture_dir(path: str | Path) -> Path:
    """A capture directory, or a run directory holding one in ``capture/``."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if (path / CAPTURE / MANIFEST).is_file():
        return path / CAPTURE
    run = path.parent if path.name == CAPTURE else path
    raise BadInput(f"{path}: no capture here (no {MANIFEST}; run `karma-probe capture {run}` first)")


def read_manifest(directory: str | Path) -> dict:
    """``manifest.json`` of a capture directory, refused unless it is of this :data:`SCHEMA`."""
    f = Path(directory) / MANIFEST
    manifest = read_json(f, "capture manifest")
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        got = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise BadInput(f"{f}: schema is {got!r}, expected {SCHEMA!r} (written by another karma_probe version? "
                       f"{_RECAPTURE})")
    return manifest


def read_capture(path: str | Path, parts: tuple[str, ...] = CAPTURE_PARTS, *,
                 checkpoint: str | Path | None = None) -> Capture:
    """Read a capture (or a run dir's capture): the manifest and the given ``parts``.

    Each part read must hold exactly the keys, shapes and dtypes its manifest lists (a manifest
    without a ``files`` listing, which only hand-made captures lack, is not compared). With
    ``checkpoint``, the capture must be of that checkpoint's model and step.
    """
    directory = capture_dir(path)
    manifest = read_manifest(directory)
    if checkpoint is not None:
        check_fingerprint(manifest, Path(checkpoint), directory)
        check_step(manifest, Path(checkpoint), directory)
    listed = manifest.get("files")
    arrays = {}
    for part in parts:
        f = directory / part_file(part)
        arrays[part] = load_arrays(f, PART_WHAT[part], hint=f"an interrupted capture? {_RECAPTURE}")
        if listed is not None and describe(arrays[part]) != (listed.get(f.name) if isinstance(listed, dict) else None):
            raise BadInput(f"{f}: keys or shapes differ from {MANIFEST}")
    return Capture(manifest, **arrays, path=directory)


# --------------------------------------------------------------------------- does it fit the checkpoint?


def check_fingerprint(manifest: dict, checkpoint: Path, capture_path: Path) -> None:
    """The capture's model fingerprint must equal the checkpoint's HF config (layers, heads, ...)."""
    fp = manifest.get("model")
    if not isinstance(fp, dict):
        raise BadInput(f"{Path(capture_path) / MANIFEST}: no model fingerprint ('model')")
    cfg = read_json(Path(checkpoint) / CONFIG, "checkpoint config")
    diffs = []
    for key, hf_keys in FINGERPRINT.items():
        have = next((cfg[k] for k in hf_keys if k in cfg), None)
        if key == "kv_heads" and have is None:
            have = next((cfg[k] for k in FINGERPRINT["heads"] if k in cfg), None)
        if key in fp and have is not None and fp[key] != have:
            diffs.append(f"{key} {fp[key]} vs {have}")
    arch = (cfg.get("architectures") or [None])[0]
    if fp.get("architecture") and arch and fp["architecture"] != arch:
        diffs.append(f"architecture {fp['architecture']} vs {arch}")
    if diffs:
        raise BadInput(f"{capture_path}: capture is from another model than {checkpoint} ({'; '.join(diffs)})")


def check_step(manifest: dict, checkpoint: Path, capture_path: Path) -> None:
    """A capture of step 100 must not be analyzed as the weights of step 400 (a stale capture)."""
    captured = (manifest.get("run") or {}).get("step")
    if captured is None:
        return
    step = read_state(checkpoint).get("step")
    if step is not None and step != captured:
        raise BadInput(f"{capture_path}: captured at step {captured}, but {checkpoint} is step {step} "
                       f"(a stale capture: {_RECAPTURE})")


# --------------------------------------------------------------------------- the figures' views


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


def check_hidden(t: dict[str, np.ndarray], where: str) -> None:
    """The hidden states hold :data:`HIDDEN_KEYS` with their dimensions, in agreeing counts and widths."""
    for key, ndim in HIDDEN_KEYS.items():
        if key not in t:
            raise BadInput(f"{where}: missing tensor {key!r} ({ndim}-d)")
        if t[key].ndim != ndim:
            raise BadInput(f"{where}: {key} has shape {list(t[key].shape)}, expected {ndim} dimensions")
    n = len(t["interest"])
    if len(t["marker_hidden"]) != n or len(t["targets"]) != n or t["items"].shape[1] != t["interest"].shape[1]:
        raise BadInput(f"{where}: shapes disagree: marker_hidden {list(t['marker_hidden'].shape)}, "
                       f"interest {list(t['interest'].shape)}, items {list(t['items'].shape)}, "
                       f"targets {list(t['targets'].shape)}")


def read_hidden(directory: str | Path) -> Hidden:
    """``hidden.safetensors`` of a capture directory, checked (:func:`check_hidden`)."""
    f = Path(directory) / HIDDEN_FILE
    t = load_arrays(f, PART_WHAT["hidden"], hint="run `karma-probe capture` for this run")
    check_hidden(t, str(f))
    return Hidden(**{k: t[k] for k in HIDDEN_KEYS})


def read_maps(directory: str | Path) -> tuple[ProbeMap, ...]:
    """The probes in ``maps.safetensors`` of a capture directory, ordered by probe index, with the
    axis labels the manifest's ``map_labels`` gives (a continuous run's item titles) if any."""
    f = Path(directory) / MAPS_FILE
    tensors = load_arrays(f, PART_WHAT["maps"], hint="run `karma-probe capture` for this run")
    probes: dict[int, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = re.fullmatch(r"probe(\d+)\.(attn|input_ids)", key)
        if m:
            probes.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if not probes:
        raise BadInput(f"{f}: no probe{{k}}.attn tensors")
    manifest = f.parent / MANIFEST
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
