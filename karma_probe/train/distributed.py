"""The processes of one training run: one process group, one writer.

A launcher starts N copies of ``karma-probe train`` and tells each, through the environment,
that it is one of N (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``: torchrun and ``accelerate launch``
alike). The copies must then join one process group, so that every step averages their
gradients (data parallel: the effective batch is ``batch_size × N``), and only the main process
(rank 0) may write the run directory. Two ways this goes wrong, both handled here:

- **No GPU**: Accelerate joins launched processes into a group only on an accelerator, unless
  told to use the CPU; launched on a CPU machine, each copy went on as a single process and N
  independent trainings wrote one run directory. :func:`accelerator` asks for the CPU back-end
  (gloo) where there is no GPU, so the same command trains data-parallel on both.
- **Any other set-up where the copies did not join** (the launcher says N > 1, the group has
  one member): refused before anything is written (:func:`check_world`).

Tested command (CPU, 2 processes; on GPUs the same with ``--nproc_per_node`` = the GPU count):

    torchrun --standalone --nproc_per_node 2 -m karma_probe train --preset tiny --condition action --out runs/x --threads 1
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TypeVar

from karma_probe.core.errors import BadInput

T = TypeVar("T")

LAUNCH = "torchrun --standalone --nproc_per_node N -m karma_probe train ..."


def launched_world(environ: Mapping[str, str] = os.environ) -> int:
    """How many processes the launcher says it started (1 when none did)."""
    raw = environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise BadInput(f"WORLD_SIZE={raw!r} in the environment is not a number of processes") from None


def check_world(launched: int, joined: int) -> None:
    """Refuse copies that were launched as a group of ``launched`` but run alone (``joined`` = 1):
    each would train its own model into the same run directory."""
    if launched > 1 and joined != launched:
        raise BadInput(f"the launcher started {launched} processes (WORLD_SIZE={launched}) but they did not join one "
                       f"process group ({joined} joined): each would train on its own into the same run; "
                       f"launch with {LAUNCH}")


def accelerator():
    """The run's Accelerator: gloo on CPUs, the accelerator's own back-end (NCCL) on GPUs; refused
    (:func:`check_world`) when launched processes did not join one group."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    launched = launched_world()
    cpu = launched > 1 and not torch.cuda.is_available()
    accel = Accelerator(cpu=cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    check_world(launched, accel.num_processes)
    return accel


def on_main(accel, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only (a run-directory write); every process gets its result.
    Its failure is raised there as it is and in every other process as a BadInput with its message,
    so no process waits forever for a main process that has given up."""
    result, error, failure = None, None, None
    if accel.is_main_process:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 -- re-raised below, after the others have heard of it
            failure, error = e, str(e) or type(e).__name__
    if accel.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        result, error = broadcast_object_list([result, error], from_process=0)
    if failure is not None:
        raise failure
    if error is not None:
        raise BadInput(error)
    return result
