"""Atomic file IO for run directories: JSON, JSON lines, safetensors, provenance.

Every write goes to a temporary file in the same directory and is renamed into place, so a
killed process never leaves a half-written file behind. Only JSON and safetensors are read back,
never pickle. Tensors come in two flavours: ``save_tensors`` / ``load_tensors`` (torch, for
checkpoints) and ``save_arrays`` / ``load_arrays`` (numpy, for captures: no torch needed to read).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from karma_probe.core.errors import BadInput

PACKAGES = ("torch", "transformers", "transformer-lens", "accelerate", "numpy", "scikit-learn", "karma-probe")


@contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temp path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    if path.exists() and not path.is_file():
        # os.replace would swap out whatever is there: a directory fails late, and a device such
        # as /dev/null (writable by root) would be replaced by a regular file
        raise BadInput(f"{path}: exists and is not a regular file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(tmp, path)
    except OSError as e:
        # a failed write() (ENOSPC, EIO) names no file: name the one the user asked for
        if e.filename is None or str(e.filename) == tmp:
            e.filename = str(path)
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: str | Path):
    """Yield a temp directory next to ``path``; swap it in for ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_writable(path: str | Path, *, directory: bool = False) -> Path:
    """Refuse an output path before the work that fills it, leaving nothing behind.

    The path itself must be a regular file (a directory with ``directory=True``) or absent, and its
    nearest existing ancestor a directory in which a file can really be created: a probe file is
    made and removed there, which catches a read-only file system even for root. Raises BadInput
    or the OSError the write would have raised (the CLI reports either as one line, exit 2).
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() if directory else not path.is_file()):
        raise BadInput(f"{path}: exists and is not a {'directory' if directory else 'regular file'}")
    parent = path.parent if not path.exists() or not directory else path
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{parent} is not a directory", str(path))
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        e.filename = str(path)  # name what the user gave, not our probe file
        raise
    return path


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path, Path(path).suffix) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def read_json(path: str | Path, what: str = "file"):
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: not valid JSON ({e})") from None


def append_jsonl(path: str | Path, obj) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj, default=_json_default) + "\n")
    except OSError as e:
        e.filename = e.filename or str(path)  # a failed write() names no file
        raise


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a kill: everything before it is good
    return out


def save_tensors(path: str | Path, tensors: dict, metadata: dict | None = None) -> None:
    """Atomically write a dict of torch tensors as safetensors."""
    from safetensors.torch import save_file

    with atomic_path(path, ".safetensors") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_tensors(path: str | Path, what: str = "tensor file") -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: {what} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise BadInput(f"{path}: unreadable {what} (truncated or not safetensors: {e})") from None


def save_arrays(path: str | Path, arrays: dict, metadata: dict | None = None) -> None:
    """Atomically write a dict of numpy arrays as safetensors (the same bytes ``save_tensors`` writes)."""
    import numpy as np
    from safetensors.numpy import save_file

    # safetensors.numpy writes each array's raw buffer: a strided view must be made contiguous first
    with atomic_path(path, ".safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata=metadata)


def load_arrays(path: str | Path, what: str = "tensor file", hint: str = "") -> dict:
    """A safetensors file as numpy arrays; BadInput naming ``path`` when missing (plus ``hint``) or unreadable."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: {what} not found{f' ({hint})' if hint else ''}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise BadInput(f"{path}: unreadable {what} (truncated or not safetensors: {e})") from None


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
