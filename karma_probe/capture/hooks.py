"""The one place that registers PyTorch hooks, and the canonical names of what they see.

Hooks are global state on a module: a hook left behind by a failed forward silently changes
every later forward. So hooks exist only inside :func:`hooked`, which removes every handle it
registered when the block ends, also when the forward inside it raises.

Canonical activation names follow TransformerLens, with shapes documented once:

    hook_embed                  # [batch, pos, d_model]   input of decoder layer 0 (residual stream index 0):
                                #                         token embeddings, plus position embeddings or
                                #                         scaling where the architecture adds them
    blocks.{l}.hook_resid_post  # [batch, pos, d_model]   output of decoder layer l (residual index l+1)
    blocks.{l}.attn.hook_pattern  # [batch, head, query_pos, key_pos]   softmax attention of layer l
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch

from karma_probe.core.errors import BadInput

EMBED = "hook_embed"


def resid_post(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def attn_pattern(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def resid_name(index: int) -> str:
    """Residual-stream index (0 = embeddings, l+1 = layer l's output) → canonical name."""
    return EMBED if index == 0 else resid_post(index - 1)


@contextmanager
def hooked(registrations: Iterable[tuple[object, str, Callable]]):
    """Register ``(module, kind, fn)`` hooks for the duration of the block; always remove them.

    ``kind`` is ``"forward"`` (``fn(module, args, kwargs, output)``) or ``"forward_pre"``
    (``fn(module, args, kwargs)``); both receive keyword arguments, because HF decoder layers
    call their attention with ``hidden_states=...``, ``position_embeddings=...`` as keywords.
    """
    handles = []
    try:
        for module, kind, fn in registrations:
            if kind == "forward":
                handles.append(module.register_forward_hook(fn, with_kwargs=True))
            elif kind == "forward_pre":
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
            else:
                raise ValueError(f"unknown hook kind {kind!r}")
        yield
    finally:
        for h in handles:
            h.remove()


def decoder(model):
    """The decoder stack of an HF causal LM without its LM head (``model.model``, GPT-2's ``transformer``, ...)."""
    return getattr(model, "base_model", model)


def decoder_layers(model) -> list:
    """The decoder layers of an HF causal LM, in order: the modules transformers itself records
    ``hidden_states`` from (``_can_record_outputs``), else the ModuleList of ``num_hidden_layers`` blocks."""
    n = model.config.num_hidden_layers
    kind = getattr(model, "_can_record_outputs", None) or {}
    kind = kind.get("hidden_states")
    kind = getattr(kind, "target_class", kind)
    if isinstance(kind, type):
        layers = [m for m in model.modules() if isinstance(m, kind)]
        if len(layers) == n:
            return layers
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if len(lists) == 1:
        return list(lists[0])
    raise BadInput(f"{type(model).__name__}: cannot find its {n} decoder layers; use --backend tl")
