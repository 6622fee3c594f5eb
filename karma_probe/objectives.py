"""The three losses and their weighted sum: ``L = L_act + λ_gen·L_gen + λ_rec·L_rec``.

- ``L_act``: InfoNCE of the interest embedding against the batch's target items (in-batch and
  sampled negatives), logits scaled by a learnable (or fixed) inverse temperature.
- ``L_gen``: next-token cross-entropy on the target item's text appended after the marker, in the
  same forward pass; causal masking keeps the interest embedding blind to it.
- ``L_rec``: cross-entropy decoding the target item's text from the interest embedding alone,
  through the adapter's soft prompts and the same LLM.

A term whose λ is 0 is not computed at all, so λ = 0 gives exactly the action-only loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from karma_probe.retriever import KarmaModel


def info_nce(interest: torch.Tensor, items: torch.Tensor, target_index: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B, e) interests, (M, e) items, (B,) index of each user's positive among the items."""
    logits = scale * interest @ items.T  # (B, M)
    return F.cross_entropy(logits, target_index)


class KarmaObjective(nn.Module):
    """Wraps a KarmaModel so ``forward(batch)`` returns the loss terms (one module for Accelerate)."""

    def __init__(self, model: KarmaModel, lambda_gen: float, lambda_rec: float, max_scale: float = 100.0):
        super().__init__()
        self.model = model
        self.lambda_gen = lambda_gen
        self.lambda_rec = lambda_rec
        self.max_scale = max_scale

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        m = self.model
        h = m.hidden(batch["input_ids"], batch["attention_mask"])  # (B, T, d)
        B = h.shape[0]
        interest = m.interest_from_hidden(h[torch.arange(B, device=h.device), batch["marker_pos"]])  # (B, e)
        items = m.encode_items(batch["item_ids"], batch["item_mask"])  # (M, e)
        scale = m.log_scale.exp().clamp(max=self.max_scale)
        out = {"l_act": info_nce(interest, items, batch["target_index"], scale)}
        loss = out["l_act"]
        if self.lambda_gen > 0:
            labels = batch["gen_labels"]  # (B, T), -100 except positions that predict target tokens
            sel = labels != -100
            logits = m.backbone.lm_head(h[sel])  # (N_tok, V): the LM head only where it is scored
            out["l_gen"] = F.cross_entropy(logits, labels[sel])
            loss = loss + self.lambda_gen * out["l_gen"]
        if self.lambda_rec > 0:
            logits, labels = m.reconstruction_logits(interest, batch["target_ids"], batch["target_mask"])
            out["l_rec"] = F.cross_entropy(logits, labels)
            loss = loss + self.lambda_rec * out["l_rec"]
        out["loss"] = loss
        out["scale"] = scale.detach()
        return out
