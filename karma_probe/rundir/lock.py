"""One writer per run directory: an OS file lock that train, capture, analyze and reproduce share.

A run directory is written by several commands over its life (train, then capture, then analyze),
each replacing files the next one reads. Two of them at once on one run would leave a mix (one
training's ``config.json`` beside another's checkpoint), so every writer holds the run's lock for
as long as it works on it:

    RUNS_ROOT/.run-locks/<name>.lock    flock'ed by the writer; holds its pid and command line;
                                        removed when the writer is done

The lock lives beside the run, not inside it, because writers replace or delete the run
directory itself (``train --overwrite``, a reference run swapped in by ``atomic_dir``): a lock
file inside would be swapped away with it while still held. The path is resolved first, so
``runs/x``, ``runs/x/`` and a symlink to ``runs/x`` are one lock. The OS drops an ``flock`` when
its process exits or is killed, so a lock never outlives its owner.

The commands take the lock at their entry (``commands/train.py``, ``capture.py``, ``analyze.py``);
``reproduce`` takes it around each run and calls the stages' functions in-process under that one
claim. A claim is not re-entrant, not even within one process (each claim opens the file anew, and
``flock`` locks an open file): a stage must not claim again what its caller holds. Without
``fcntl`` (Windows) every claim succeeds: one writer at a time is then up to the user.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from karma_probe.core.errors import BadInput

LOCKS = ".run-locks"  # the lock directory beside the runs (hidden: listings skip it)


def lock_file(run_dir: str | Path) -> Path:
    """Where the lock of ``run_dir`` lives: ``<parent>/.run-locks/<name>.lock`` of the resolved path."""
    run = Path(run_dir).resolve()
    return run.parent / LOCKS / f"{run.name}.lock"


@contextmanager
def try_claim(run_dir: str | Path):
    """Yield True while this claim holds ``run_dir``'s lock, False when another claim holds it
    (another process, or another claim of this one): the caller then leaves the run alone.

    Nothing is left behind: the holder removes its lock file on release (and the lock directory,
    and any parent it had to create, when empty), so a refused command leaves the disk as it was."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield True
        return
    path = lock_file(run_dir)
    created = _missing_dirs(path.parent)
    try:
        fd = _acquire(path, fcntl)
    except OSError:  # no lock can be made beside this run (a read-only or uncreatable parent): the
        _remove_empty(created)  # writer reports an uncreatable run itself; one it can write goes unlocked
        yield True
        return
    if fd is None:
        _remove_empty(created)
        yield False
        return
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {command_line()}\n".encode("utf-8", "replace"))
        yield True
    finally:
        path.unlink(missing_ok=True)  # while still locked: a waiting claimant then re-checks the path
        os.close(fd)  # closing the descriptor releases the flock
        _remove_empty(created or [path.parent])


def _acquire(path: Path, fcntl) -> int | None:
    """An open descriptor of ``path`` holding its exclusive flock, or None when another holds it.

    The file a claimant opened may be unlinked by its releasing holder before the flock is taken;
    a lock on that orphan would be no lock, so the path is checked to still name the locked file."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_RDWR without O_TRUNC: a claimant that fails must not wipe the holder's description
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the lock directory was removed by a releasing holder: again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # locked an unlinked file: take the one at the path now


def _can_be_directory(path: Path) -> bool:
    """``path`` is a directory, or absent with a directory as its nearest existing ancestor."""
    while not path.exists() and not path.is_symlink() and path != path.parent:
        path = path.parent
    return path.is_dir()


def _missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and those of its ancestors that do not exist yet, innermost first."""
    out = []
    while not directory.exists() and directory != directory.parent:
        out.append(directory)
        directory = directory.parent
    return out


def _remove_empty(dirs: list[Path]) -> None:
    for d in dirs:  # innermost first; one that is not empty (another claim, a new run) stays
        try:
            d.rmdir()
        except OSError:
            return


@contextmanager
def claim_run(run_dir: str | Path, what: str = "write", *, new: bool = False):
    """Hold ``run_dir``'s lock for the block, or raise BadInput naming the process that holds it
    (pid and command line): one line, exit 2, and nothing written to the run. Unless the block may
    create the run (``new``), a missing run directory is refused first, before any lock is made; with
    ``new``, a path that cannot be a directory (a file, or under one) is left to the writer to refuse."""
    if not new and not Path(run_dir).is_dir():
        raise BadInput(f"{run_dir}: run directory not found")
    if new and not _can_be_directory(Path(run_dir)):
        yield  # the writer refuses it with its own message; there is no run to lock
        return
    with try_claim(run_dir) as mine:
        if not mine:
            raise BadInput(f"{run_dir}: another process is writing this run ({holder(run_dir)}); "
                           f"not starting a second {what} on it: wait for that one to finish, or choose another run")
        yield


def _lock_line(run_dir: str | Path) -> str | None:
    """The line the holder of ``run_dir``'s lock wrote (``"123 karma-probe train ..."``), None without a lock file."""
    try:
        return lock_file(run_dir).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _describe(line: str) -> str:
    pid, _, cmd = line.partition(" ")
    if not pid.isdigit():  # the holder has the lock but has not written its line yet
        return "a process that has not yet said which"
    return f"pid {pid}: {cmd}" if cmd else f"pid {pid}"


def holder(run_dir: str | Path) -> str:
    """The holder of ``run_dir``'s lock as it described itself: ``pid 123: karma-probe train ...``."""
    return _describe(_lock_line(run_dir) or "")


def busy(run_dir: str | Path) -> str | None:
    """Who is writing ``run_dir`` now (as :func:`holder` words it), else None; for readers such as
    ``karma-probe ls``. It never takes the lock (a reader holding it, however briefly, would make a
    writer starting at that moment fail): the lock file exists while a writer holds it, and names a
    live process. A killed writer's file stays behind, but its process is gone, so it is not busy."""
    line = _lock_line(run_dir)
    if line is None:
        return None
    pid = line.partition(" ")[0]
    if pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, another user's process
            pass
    return _describe(line)


def command_line() -> str:
    """This process's command line, as ``ps`` shows it (``/proc/self/cmdline``), else ``sys.argv``."""
    try:
        args = Path("/proc/self/cmdline").read_bytes().split(b"\0")
        text = " ".join(a.decode("utf-8", "replace") for a in args if a)
    except OSError:
        text = ""
    return " ".join((text or " ".join([sys.executable, *sys.argv])).split())  # one line, whatever the args hold


def writer_rank() -> int:
    """This process's rank under a distributed launcher (torchrun, ``accelerate launch``): ``RANK``,
    0 when not launched so. Only rank 0 writes a run directory, so only rank 0 takes its lock."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0
