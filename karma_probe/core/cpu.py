"""How many torch threads to use on a CPU that other jobs may share.

OpenMP threads that wait for a busy core spin instead of sleeping, so on a loaded machine extra
threads make torch several times slower (measured: benchmarks/README.md). So torch gets the idle
cores (cores minus the 1-minute load average, at least 1), unless told otherwise.
"""

from __future__ import annotations

import os
from contextlib import contextmanager


def auto_threads(available: int | None = None) -> int:
    """Threads for the idle cores: cores minus the 1-minute load average (at least 1)."""
    cores = available or os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return cores
    return max(1, min(cores, round(cores - load)))


@contextmanager
def torch_threads(threads: int | None = None):
    """Run the block with ``threads`` torch intra-op threads (None: :func:`auto_threads`); restore after."""
    import torch

    before = torch.get_num_threads()
    n = threads or auto_threads(os.cpu_count())
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
