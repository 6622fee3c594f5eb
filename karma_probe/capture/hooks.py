"""The one place that registers PyTorch hooks, and the canonical names of what they see.

Hooks are global state on a module: a hook left behind by a failed forward silently changes
every later forward. So hooks exist only inside :func:`hooked`, which removes every handle it
registered when the block ends, also when the forward inside it raises.

Canonical activation names follow TransformerLens, with shapes documented once:

    hook_embed                  # [batch, pos, d_model]   token embeddings (residual stream index 0)
    blocks.{l}.hook_resid_post  # [batch, pos, d_model]   output of decoder layer l (residual index l+1)
    blocks.{l}.attn.hook_pattern  # [batch, head, query_pos, key_pos]   softmax attention of layer l
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

from karma_probe.errors import BadInput

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
    """The decoder stack of an HF causal LM (``model.model`` for Llama-family models)."""
    inner = getattr(model, "model", model)
    if not hasattr(inner, "layers") or not hasattr(inner, "embed_tokens"):
        raise BadInput(f"{type(model).__name__}: not a Llama-style decoder (no .model.layers / .model.embed_tokens); "
                       "use --backend tl")
    return inner


def decoder_layers(model) -> list:
    return list(decoder(model).layers)


def attention_modules(model) -> list:
    """Each decoder layer's self-attention module, in layer order."""
    layers = decoder_layers(model)
    mods = [getattr(layer, "self_attn", None) for layer in layers]
    if any(m is None or not hasattr(m, "q_proj") or not hasattr(m, "k_proj") for m in mods):
        raise BadInput(f"{type(model).__name__}: attention without q_proj/k_proj is not supported by the torch backend; "
                       "use --backend tl")
    return mods


def embedding_module(model):
    return decoder(model).embed_tokens
