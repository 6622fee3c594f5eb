"""The three losses and their weighted sum: ``L = L_act + λ_gen·L_gen + λ_rec·L_rec``.

Continuous interface (every history position predicts the next item):

- ``L_act``: cross-entropy of ``scale · cos(interest_t, item) + bias_item`` over the **whole
  catalogue** at every position t (``act_loss="softmax"``), or over the batch's target items plus
  sampled negatives (``"inbatch"``).
- ``L_gen``: next-token cross-entropy on the text of the next item after the history up to a
  sampled position t: the text tokens continue from the first pass's cached keys and values of
  positions ≤ t; the interest embedding at t comes from the first pass, so it never sees that text.
- ``L_rec``: cross-entropy decoding that item's text from the interest embedding at t alone,
  through the adapter's soft prompts and the same LLM.

Text interface: ``L_act`` is InfoNCE against the batch's target items (in-batch and sampled
negatives); ``L_gen`` decodes the target text appended after the marker in the same forward pass
(causal masking keeps the interest embedding blind to it); ``L_rec`` as above.

A term whose λ is 0 is not computed at all, so λ = 0 gives exactly the action-only loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from karma_probe.model.retriever import KarmaModel


def info_nce(interest: torch.Tensor, items: torch.Tensor, target_index: torch.Tensor, scale: torch.Tensor,
             bias: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy of ``scale · interest·item (+ bias_item)`` over the candidate items.

    (B, e) interests, (M, e) items, (B,) index of each positive among the items, (M,) optional
    bias. With the whole catalogue as the items this is the full softmax; with the batch's targets
    (+ sampled negatives) it is in-batch InfoNCE.
    """
    logits = scale * interest @ items.T  # (B, M)
    if bias is not None:
        logits = logits + bias
    return F.cross_entropy(logits.float(), target_index)


class KarmaObjective(nn.Module):
    """Wraps a KarmaModel so ``forward(batch)`` returns the loss terms (one module for Accelerate)."""

    def __init__(self, model: KarmaModel, lambda_gen: float, lambda_rec: float, max_scale: float = 100.0,
                 full_softmax: bool = True):
        super().__init__()
        self.model = model
        self.full_softmax = full_softmax
        self.lambda_gen = lambda_gen
        self.lambda_rec = lambda_rec
        self.max_scale = max_scale

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.model.interface == "continuous":
            return self._continuous(batch)
        return self._text(batch)

    def _continuous(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        m = self.model
        emb = m.history_inputs(batch["items"])  # (B, T, d)
        if self.lambda_gen > 0:  # L_gen continues from this pass's keys and values
            h, cache = m.hidden_and_cache(emb, batch["mask"])  # (B, T, d)
        else:
            h = m.hidden(inputs_embeds=emb, attention_mask=batch["mask"])  # (B, T, d)
        sel = batch["targets"] != -100  # (B, T)
        interest = m.interest_from_hidden(h[sel])  # (N, e): every position with a next item
        target = batch["targets"][sel]  # (N,)
        scale = m.scale(self.max_scale)
        table = m.catalogue.table()  # (I, e)
        if self.full_softmax:
            out = {"l_act": info_nce(interest, table, target, scale, m.catalogue.bias)}
        else:  # the batch's targets and sampled negatives as candidates
            cand = torch.unique(torch.cat([target, batch.get("negatives", target[:0])]))  # (M,) sorted
            out = {"l_act": info_nce(interest, table[cand], torch.searchsorted(cand, target), scale,
                                     m.catalogue.bias[cand])}
        loss = out["l_act"]
        if self.lambda_gen > 0 or self.lambda_rec > 0:
            rows, cols = batch["reg_row"], batch["reg_col"]
            if self.lambda_gen > 0:
                logits, labels = m.continuation_logits(h, cache, rows, cols, batch["reg_ids"], batch["reg_mask"])
                out["l_gen"] = F.cross_entropy(logits.float(), labels)
                loss = loss + self.lambda_gen * out["l_gen"]
            if self.lambda_rec > 0:
                z = m.interest_from_hidden(h[rows, cols])  # (P, e)
                logits, labels = m.reconstruction_logits(z, batch["reg_ids"], batch["reg_mask"])
                out["l_rec"] = F.cross_entropy(logits.float(), labels)
                loss = loss + self.lambda_rec * out["l_rec"]
        out["loss"] = loss
        out["scale"] = scale.detach()
        return out

    def _text(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        m = self.model
        h = m.hidden(batch["input_ids"], batch["attention_mask"])  # (B, T, d)
        B = h.shape[0]
        interest = m.interest_from_hidden(h[torch.arange(B, device=h.device), batch["marker_pos"]])  # (B, e)
        items = m.encode_items(batch["item_ids"], batch["item_mask"])  # (M, e)
        scale = m.scale(self.max_scale)
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


# ---------------------------------------------------------------------- per-loss gradients

REGULARIZERS = ("gen", "rec")


def loss_gradients(terms: dict[str, torch.Tensor], params: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """Each loss term's gradient on ``params`` (the shared parameters), without touching ``.grad``:
    ``{"act": [...], "gen": [...], "rec": [...]}`` for the terms present. The graph is kept for
    the training backward that follows."""
    out = {}
    for name in ("act", *REGULARIZERS):
        if f"l_{name}" in terms:
            grads = torch.autograd.grad(terms[f"l_{name}"], params, retain_graph=True, allow_unused=True)
            out[name] = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    return out


def gradient_stats(grads: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """``gn_<term>``: the L2 norm of each term's gradient on the shared parameters;
    ``cos_<a>_<b>``: the cosine between two terms' gradients (0 when one of them is zero)."""
    flat = {k: torch.cat([g.float().flatten() for g in v]) for k, v in grads.items()}
    out = {f"gn_{k}": float(v.norm()) for k, v in flat.items()}
    names = list(flat)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            den = flat[a].norm() * flat[b].norm()
            out[f"cos_{a}_{b}"] = float(flat[a] @ flat[b] / den) if den > 0 else 0.0
    return out


def balanced_weights(stats: dict[str, float], lambdas: dict[str, float], rho: float) -> dict[str, float]:
    """The balanced form's weight of each regularizer: ``w = min(λ, ρ · ‖g_act‖ / ‖g_reg‖)``, so that
    ``w · ‖g_reg‖ ≤ ρ · ‖g_act‖`` on the shared parameters (a term with a zero gradient keeps λ)."""
    out = {}
    for name, lam in lambdas.items():
        g = stats.get(f"gn_{name}", 0.0)
        out[name] = min(lam, rho * stats["gn_act"] / g) if g > 0 else lam
    return out
