"""Where a model runs and in which precision: ``--device`` and ``--dtype`` of capture, analyze, diagnose.

    --device cpu | cuda | mps | auto     auto = cuda if available, else mps if available, else cpu
    --dtype  float32 | bfloat16 | float16

The weights are loaded in ``--dtype``; statistics are always accumulated in float32 or wider
(the capture's reducers cast the attention probabilities and hidden states with ``.float()``
before any reduction, and keep float64 sums), so a bf16 capture differs from an fp32 one only
by what bf16 weights and activations change in the forward pass itself. A device that this
machine does not have is bad input (one line, exit 2), found before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

DEVICES = ("cpu", "cuda", "mps", "auto")
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_DEVICE = "cpu"
DEFAULT_DTYPE = "float32"


@dataclass(frozen=True)
class Placement:
    """A resolved ``--device`` / ``--dtype`` pair (names as torch spells them)."""

    device: str = DEFAULT_DEVICE  # "cpu" | "cuda" | "mps" (auto resolved)
    dtype: str = DEFAULT_DTYPE

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def to_json(self) -> dict:
        return {"device": self.device, "dtype": self.dtype}


def _available(name: str) -> bool:
    import torch

    if name == "cpu":
        return True
    if name == "cuda":
        return torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve(device: str = DEFAULT_DEVICE, dtype: str = DEFAULT_DTYPE) -> Placement:
    """``--device`` / ``--dtype`` → :class:`Placement`; an unknown or unavailable one is BadInput."""
    from karma_probe.core.errors import BadInput

    if device not in DEVICES:
        raise BadInput(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise BadInput(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if device == "auto":
        device = next(d for d in ("cuda", "mps", "cpu") if _available(d))
    elif not _available(device):
        raise BadInput(f"--device {device}: not available on this machine (torch sees no {device}); "
                       "use --device cpu or --device auto")
    return Placement(device, dtype)


def add_arguments(p) -> None:
    """``--device`` and ``--dtype`` with their help, for every subcommand that loads a model."""
    p.add_argument("--device", default=DEFAULT_DEVICE, choices=DEVICES,
                   help="where the model runs: cpu (default), cuda, mps, or auto (cuda if available, else mps, else cpu)")
    p.add_argument("--dtype", default=DEFAULT_DTYPE, choices=DTYPES,
                   help="weights' precision (default float32); statistics are accumulated in float32 either way")
