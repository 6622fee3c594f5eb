"""Exact causal attention probabilities from a layer's queries and keys, one query chunk at a time.

For queries ``s <= i < e`` and keys ``j < e`` (keys ``j >= e`` are masked for every query in the
chunk, so they are never computed):

    S[i, j] = (q_i · k_j) · scaling        (the module's own scaling, 1/sqrt(head_dim) for Llama)
    P[i, j] = softmax_j(S[i, j] masked to j <= i)

which is what eager attention computes row by row; the model itself keeps running SDPA. Peak
extra memory is one ``(B, H, C, T)`` block instead of ``(B, H, T, T)`` per layer.

Queries and keys are recomputed from the attention module's input with the module's own
projections (``q_proj``, ``k_proj``, optional ``q_norm``/``k_norm`` as in Qwen3), its model
file's ``apply_rotary_pos_emb`` and ``repeat_kv`` for grouped-query attention.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import torch


def _model_file_function(module, name: str):
    """The model file's own version of a helper (RoPE variants differ by architecture)."""
    fn = getattr(sys.modules.get(type(module).__module__), name, None)
    if fn is None:
        from transformers.models.llama import modeling_llama

        fn = getattr(modeling_llama, name)
    return fn


@torch.no_grad()
def queries_keys(module, hidden_states: torch.Tensor, position_embeddings) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotated queries and (GQA-repeated) keys of one attention layer → ``(q, k)``, each (B, H, T, hs)."""
    B, T, _ = hidden_states.shape
    hs = module.head_dim
    q = module.q_proj(hidden_states).view(B, T, -1, hs)  # (B, T, H, hs)
    k = module.k_proj(hidden_states).view(B, T, -1, hs)  # (B, T, Hkv, hs)
    # Qwen3-style per-head norms act on (..., hs) before the transpose, exactly as in its forward.
    if getattr(module, "q_norm", None) is not None:
        q = module.q_norm(q)
    if getattr(module, "k_norm", None) is not None:
        k = module.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, T, hs), (B, Hkv, T, hs)
    cos, sin = position_embeddings
    q, k = _model_file_function(module, "apply_rotary_pos_emb")(q, k, cos, sin)
    k = _model_file_function(module, "repeat_kv")(k, module.num_key_value_groups)  # (B, H, T, hs)
    return q, k


@torch.no_grad()
def causal_rows(q: torch.Tensor, k: torch.Tensor, scaling: float, chunk_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, P[:, :, start:end, :end])`` for consecutive query chunks; P in float32.

    ``q``, ``k``: (B, H, T, hs). Each yielded block is (B, H, C, end) with C = end - start.
    Rows of right-padding positions are computed too (they are cheap and the reducers drop them);
    real rows ``i < length`` never see a padded key because padding only follows them.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    T = q.shape[2]
    q = q * scaling  # scale the (B, H, T, hs) queries once instead of every (C, T) score block
    for start in range(0, T, chunk_size):
        end = min(start + chunk_size, T)
        scores = torch.matmul(q[:, :, start:end], k[:, :, :end].transpose(2, 3)).float()  # (B, H, C, end)
        # Keys before the chunk are visible to all its queries: only the (C, C) diagonal block is masked.
        future = torch.ones(end - start, end - start, dtype=torch.bool, device=q.device).triu_(1)  # (C, C)
        scores[..., start:].masked_fill_(future, float("-inf"))
        yield start, torch.softmax(scores, dim=-1)
