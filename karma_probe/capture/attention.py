"""Exact attention rows through transformers' attention interface, one query chunk at a time.

transformers 5 routes every layer's attention through ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``
with the layer's real query, key and value (after RoPE, q/k norms; keys and values per KV head),
the mask (causal, padding, sliding window), ``scaling`` and, where the architecture has them,
``softcap`` (Gemma 2) and learned sink logits ``s_aux`` (GPT-OSS). Inside :func:`capturing`,
:data:`NAME` is the model's attention implementation: :func:`capture_attention` computes, for
query rows ``s <= i < e`` and keys ``j < e`` (later keys are masked for the whole chunk, so they
are never computed),

    S[i, j] = c · tanh((q_i · k_j) · scaling / c)   (soft-cap c, if any; else (q_i · k_j) · scaling)
    S[i, j] = -max  where the mask hides key j from query i
    P[i, :] = softmax([S[i, :e], a_h])[:e]           (a_h = head h's sink logit, if any)

in float32 (scores too, also for a bfloat16 model) — what the architecture's eager attention
computes — and returns the layer's output
``P · V`` from the same probabilities (one softmax; no second QKᵀ pass). Each chunk's P goes to
the capture's sink with its row entropies, taken without a log per probability:

    H_i = -Σ_j P_ij log P_ij = lse_i · Σ_j P_ij - Σ_j P_ij S_ij,
    lse_i = log Σ_j exp S_ij = m_i - log max_j P_ij   (m_i = max_j S_ij: the row's largest P is e^0 / Σ)

(masked keys have P_ij = 0 exactly, so their finite -max logits add nothing). Peak extra memory is
a few ``(B, H, C, e)`` blocks per layer instead of ``(B, H, T, T)``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

NAME = "karma_probe_capture"
# Rows per chunk are also capped so that one (B, H, C, e) float32 block stays near 16 MiB: the
# passes over it (mask, softmax, statistics) then run in cache. One SmolLM2 layer at T = 8192 on one
# thread: 1.69x SDPA with 64-row chunks, 3.26x with 256-row ones (benchmarks/README.md).
BLOCK_ELEMENTS = 1 << 22
_MASKED = torch.finfo(torch.float32).min  # finite: exp underflows to exactly 0 and 0 · S stays 0


@dataclass
class Capture:
    """What the attention function reports to while :func:`capturing` is active."""

    sink: object  # .attention_rows(layer, P_rows (B, H, C, e), start, entropy=(B, H, C))
    layer_of: dict[int, int]  # id(attention module) → decoder layer index
    chunk_size: int  # at most this many query rows per chunk (fewer for long sequences: BLOCK_ELEMENTS)
    called: set[int] = field(default_factory=set)  # layers whose attention ran through the interface


_ACTIVE: list[Capture] = []


def _repeat_heads(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, Hkv, T, hs) → (B, Hkv·n_rep, T, hs), each KV head repeated for its query heads (GQA)."""
    if n_rep == 1:
        return x
    B, Hkv, T, hs = x.shape
    return x[:, :, None].expand(B, Hkv, n_rep, T, hs).reshape(B, Hkv * n_rep, T, hs)


def _mask_chunk(scores: torch.Tensor, mask: torch.Tensor | None, start: int) -> None:
    """Hide the keys the mask hides from queries ``start..start+C-1``, in place; ``scores`` (B, H, C, e).

    ``mask`` None is plain causal attention: only the (C, C) diagonal block has future keys.
    A boolean mask is True where a key is visible; a float mask is additive (0 or very negative).
    """
    C, e = scores.shape[-2:]
    if mask is None:  # adding -max (not -inf) keeps hidden logits finite: exp gives 0, and 0 · S = 0
        future = torch.full((C, C), _MASKED, dtype=scores.dtype, device=scores.device).triu_(1)  # (C, C)
        scores[..., start:].add_(future)
    elif mask.dtype == torch.bool:
        scores.masked_fill_(~mask[..., start:start + C, :e], _MASKED)
    else:
        scores.add_(mask[..., start:start + C, :e].float()).clamp_(min=_MASKED)


@torch.no_grad()
def attention_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, start: int, *,
                    softcap: float | None = None, sinks: torch.Tensor | None = None):
    """One chunk of query rows: ``q`` (B, H, C, hs) already scaled, ``k``/``v`` (B, H, e, hs) up to the
    chunk's last row → ``(P (B, H, C, e) float32, entropy (B, H, C) float32, output (B, H, C, hs))``;
    ``v`` None skips the output (None)."""
    scores = torch.matmul(q, k.transpose(2, 3)).float()  # (B, H, C, e)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    _mask_chunk(scores, mask, start)
    if sinks is not None:  # one extra logit per head that takes probability mass and is dropped
        B, H, C, _ = scores.shape
        logits = torch.cat([scores, sinks.float().reshape(1, H, 1, 1).expand(B, H, C, 1)], dim=-1)  # (B, H, C, e+1)
    else:
        logits = scores
    top = logits.amax(-1)  # (B, H, C)
    probs = torch.softmax(logits, dim=-1)
    lse = top - torch.log(probs.amax(-1))  # (B, H, C)
    if sinks is not None:
        probs = probs[..., :-1]
        entropy = lse * probs.sum(-1) - (probs * scores).sum(-1)
    else:
        entropy = lse - (probs * scores).sum(-1)
    out = torch.matmul(probs.to(v.dtype), v) if v is not None else None  # (B, H, C, hs)
    return probs, entropy, out


def capture_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None,
                      s_aux=None, **kwargs):
    """The attention function registered as :data:`NAME`: ``query`` (B, H, T, hs), ``key``/``value``
    (B, Hkv, T, hs) → ``(output (B, T, H, hs), None)``, streaming exact rows to the active capture."""
    if not _ACTIVE:
        raise RuntimeError(f"attention implementation {NAME!r} used outside karma_probe.capture.attention.capturing()")
    cap = _ACTIVE[-1]
    layer = cap.layer_of.get(id(module))
    if layer is None:
        raise RuntimeError(f"{type(module).__name__}: attention module outside the decoder layers the capture knows")
    if dropout:
        raise RuntimeError("attention dropout is on (model in training mode?): the capture measures the eval model")
    B, H, T, hs = query.shape
    if key.shape[2] != T:
        raise RuntimeError(f"layer {layer}: {T} queries but {key.shape[2]} keys (a KV cache?): capture runs whole sequences")
    if attention_mask is None and not kwargs.get("is_causal", getattr(module, "is_causal", True)):
        raise RuntimeError(f"layer {layer}: bidirectional attention; the capture measures causal language models")
    scaling = hs ** -0.5 if scaling is None else scaling
    # Scores in float32 also for a bfloat16/float16 model: a logit of 10 rounded to bfloat16 moves its
    # probability by up to 4%. Values stay in the model's dtype, as its eager attention has them.
    wide = torch.promote_types(query.dtype, torch.float32)
    k = _repeat_heads(key.to(wide), H // key.shape[1])  # (B, H, T, hs)
    v = _repeat_heads(value, H // value.shape[1])
    q = query.to(wide) * scaling  # scale the (B, H, T, hs) queries once instead of every (C, e) score block
    out = torch.empty(B, T, H, v.shape[-1], dtype=value.dtype, device=value.device)
    rows = max(1, min(cap.chunk_size, BLOCK_ELEMENTS // (B * H * T)))
    for start in range(0, T, rows):
        end = min(start + rows, T)
        probs, entropy, o = attention_chunk(q[:, :, start:end], k[:, :, :end], v[:, :, :end], attention_mask, start,
                                            softcap=softcap, sinks=s_aux)
        out[:, start:end] = o.transpose(1, 2)
        cap.sink.attention_rows(layer, probs, start, entropy=entropy)
    cap.called.add(layer)
    return out, None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, capture_attention)
    # SDPA's mask: boolean (B, 1, T, T), or None for plain causal attention without padding.
    AttentionMaskInterface.register(NAME, sdpa_mask)


@contextmanager
def capturing(model, sink, layer_of: dict[int, int], chunk_size: int):
    """Run ``model``'s attention through :func:`capture_attention` for the duration of the block.

    The model's attention implementation is restored when the block ends, also when it raises.
    Yields the :class:`Capture`, whose ``called`` says which layers went through the interface.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    _register()
    previous = model.config._attn_implementation
    cap = Capture(sink, layer_of, chunk_size)
    _ACTIVE.append(cap)
    try:
        model.set_attn_implementation(NAME)
        yield cap
    finally:
        _ACTIVE.remove(cap)
        model.set_attn_implementation(previous)
