"""Is a run's result derived from what the run now holds? Fingerprints and the one chain status.

A run is a chain of derivations, each written by another command at another time:

    checkpoint/  ──capture──>  capture/  ──analyze──>  analysis.json

A capture records the fingerprint of the checkpoint it read (``manifest.json`` ``derived_from``),
an analysis the fingerprints of the capture and the checkpoint it read (``analysis.json``
``derived_from``). :func:`chain_status` compares each recorded fingerprint with the files there
now, and checks that every capture file is whole. Every reader (``ls``, ``report``, ``check``,
the dashboard) calls it, so they cannot disagree:

- ``ok``          every link recorded and matching, every capture file whole
- ``stale``       a link does not match: the derived file is older than what it derives from
                  (``capture`` re-run without ``analyze``, a re-trained checkpoint)
- ``broken``      a capture file is missing, truncated or unreadable, or the capture an analysis
                  was made from is gone
- ``unverified``  a run written before fingerprints were recorded: nothing to compare, not stale

:func:`fingerprint` is cheap, not cryptographic proof: per file its name and size, and its bytes
hashed whole up to :data:`WHOLE` bytes, else :data:`SAMPLES` blocks spread over the file. Any
rewrite by training or capture changes it (new weights everywhere, a new manifest with its
creation time); a copy of the run (``cp -r``, other modification times) keeps it. A symlinked
file (a reference run's backbone) is fingerprinted by its target's path and size, unread.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from karma_probe.rundir.layout import CAPTURE_PARTS, RunPaths, part_file

WHOLE = 4 << 20    # files up to 4 MiB are hashed whole
BLOCK = 64 << 10   # larger ones: SAMPLES blocks of 64 KiB, evenly spread (first and last included)
SAMPLES = 16
STATES = ("ok", "unverified", "stale", "broken")  # from best to worst
DERIVED = "derived_from"  # the key in manifest.json and analysis.json


def fingerprint(directory: str | Path) -> str | None:
    """A short digest of the regular files directly in ``directory`` (hidden ones skipped: atomic
    writes in progress); None when it is not a directory."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in directory.iterdir() if not p.name.startswith(".")):
        if f.is_symlink():
            target = f.resolve()
            size = target.stat().st_size if target.is_file() else -1
            h.update(f"{f.name}\0link\0{target}\0{size}\n".encode())
        elif f.is_file():
            size = f.stat().st_size
            h.update(f"{f.name}\0{size}\0".encode())
            h.update(_content_digest(f, size))
    return h.hexdigest()[:16]


def _content_digest(f: Path, size: int) -> bytes:
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        if size <= WHOLE:
            h.update(fh.read())
        else:
            for i in range(SAMPLES):
                fh.seek((size - BLOCK) * i // (SAMPLES - 1))
                h.update(fh.read(BLOCK))
    return h.digest()


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole safetensors file (missing, truncated, not safetensors), or None.
    Reads only its header: the data length it declares must be the file's."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                return f"truncated ({size} bytes, header alone declares {n + 8})"
            header = json.loads(fh.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        return f"not a safetensors file ({type(e).__name__})"
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        return f"{'truncated' if size < expected else 'has trailing bytes'} ({size} bytes, its header declares {expected})"
    return None


@dataclass(frozen=True)
class Chain:
    """A run's chain status: ``state`` (one of :data:`STATES`) and why, in one line."""

    state: str
    reason: str = ""

    @property
    def trusted(self) -> bool:
        """Whether a gate may pass this run: not stale, not broken (an unverified old run may)."""
        return self.state in ("ok", "unverified")

    def __str__(self) -> str:
        word = self.state.upper() if self.state in ("stale", "broken") else self.state
        return f"{word}: {self.reason}" if self.reason else word


def chain_status(run_dir: str | Path, analysis_derived: dict | None = None) -> Chain:
    """The chain status of ``run_dir`` (module doc). ``analysis_derived`` is analysis.json's
    ``derived_from`` when the caller has parsed it already (else it is read here)."""
    paths = RunPaths(run_dir)
    if analysis_derived is None:
        analysis_derived = _recorded(paths.analysis)
    has_analysis = paths.analysis.is_file()
    problems: list[tuple[str, str]] = []  # (state, reason), worst first at the end

    manifest = None
    if paths.manifest.is_file():
        try:
            manifest = json.loads(paths.manifest.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as e:
            problems.append(("broken", f"{paths.manifest}: unreadable ({e}); re-run `karma-probe capture`"))
        for part in CAPTURE_PARTS if manifest is not None else ():
            why = safetensors_problem(paths.capture / part_file(part))
            if why:
                problems.append(("broken", f"{paths.capture / part_file(part)}: {why}; re-run `karma-probe capture`"))
    elif has_analysis and analysis_derived.get("capture"):
        problems.append(("broken", f"{paths.capture}: the capture {paths.analysis.name} was made from is gone; "
                                   "re-run `karma-probe capture`, then `analyze`"))

    checkpoint = fingerprint(paths.checkpoint)
    capture = fingerprint(paths.capture) if manifest is not None else None
    captured_from = ((manifest or {}).get(DERIVED) or {}).get("checkpoint") if isinstance(manifest, dict) else None
    if captured_from and checkpoint and captured_from != checkpoint:
        problems.append(("stale", f"{paths.capture} is older than {paths.checkpoint} (it was captured from another "
                                  "checkpoint); re-run `karma-probe capture`, then `analyze`"))
    if has_analysis:
        if analysis_derived.get("capture") and capture and analysis_derived["capture"] != capture:
            problems.append(("stale", f"{paths.analysis} is older than {paths.capture} (it was computed from "
                                      "another capture); re-run `karma-probe analyze`"))
        if analysis_derived.get("checkpoint") and checkpoint and analysis_derived["checkpoint"] != checkpoint:
            problems.append(("stale", f"{paths.analysis} is older than {paths.checkpoint} (it was computed from "
                                      "another checkpoint); re-run `karma-probe capture` and `analyze`"))
    if problems:
        worst = max(problems, key=lambda p: STATES.index(p[0]))[0]
        return Chain(worst, "; ".join(r for s, r in problems if s == worst))
    missing = ["capture"] if manifest is not None and not captured_from else []
    if has_analysis and not (analysis_derived.get("capture") or analysis_derived.get("checkpoint")):
        missing.append("analysis")
    if missing:
        return Chain("unverified", f"its {' and '.join(missing)} record no fingerprint of what they were made from "
                                   "(written by an older karma_probe); re-run `capture` and `analyze` to verify")
    return Chain("ok")


def _recorded(analysis: Path) -> dict:
    """analysis.json's ``derived_from`` ({} when absent or unreadable: the analysis reader says why)."""
    try:
        obj = json.loads(analysis.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    derived = obj.get(DERIVED) if isinstance(obj, dict) else None
    return derived if isinstance(derived, dict) else {}


def derivation(*, checkpoint: str | Path | None = None, capture: str | Path | None = None) -> dict:
    """The ``derived_from`` block a writer records: the fingerprints of what it read."""
    out = {}
    if checkpoint is not None:
        out["checkpoint"] = fingerprint(checkpoint)
    if capture is not None:
        out["capture"] = fingerprint(capture)
    return out

