"""Batching and pooling helpers shared by the retriever, the catalogue, training batches and capture.

A bottom module (torch only): padding token lists, mean-pooling hidden states over real tokens,
and walking a list in batches, optionally with a progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_right(seqs: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists with ``value`` → (ids (B, T), mask (B, T)); the marker stays at len-1."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden states (B, T, d) over the real tokens of ``mask`` (B, T) → (B, d)."""
    w = mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


def batch_starts(n: int, size: int, progress: bool = False, desc: str = ""):
    """``range(0, n, size)``, behind a progress bar when ``progress``."""
    starts = range(0, n, size)
    if progress:
        from tqdm.auto import tqdm

        return tqdm(starts, desc=desc, unit="batch", leave=False)
    return starts


def length_sorted_batches(seqs: Sequence[Sequence], batch_size: int, progress: bool = False, desc: str = ""):
    """Index lists of ``batch_size`` sequences of similar length (little padding); together they
    cover every index once, so results written to ``out[idx]`` come back in the input order."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for s in batch_starts(len(seqs), batch_size, progress, desc):
        yield order[s: s + batch_size]
