"""The item catalogue as the LLM sees it through the continuous-token interface.

Each item has a **content vector**: the *untouched* backbone's final (normed) hidden states over
the item's text (``prompts.item_text``), mean-pooled over its tokens, then standardized per
dimension over the catalogue. It is computed once per (backbone, catalogue) and cached, and it is
stored inside every checkpoint (``heads.safetensors``), so a checkpoint never needs to recompute it.

:class:`ItemTokens` turns item indices into what the retriever needs (N items, width d, embed e):

    input(i) = in_proj(content_i) + id_in_i          # (d,)  one LLM input embedding per item
    table    = L2norm(item_head(content) + id_out)   # (N, e) the catalogue, scored by the interest
    bias                                              # (N,)  per-item logit bias (popularity)

The ID vectors and the bias start at zero, so at step 0 an item is only its content; ``in_proj``
starts at the scale of the backbone's token embeddings, so the pretrained layers see inputs of
the size they were trained on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CONTENT_BATCH = 64


@torch.no_grad()
def content_vectors(backbone, tokenizer, texts: list[str], max_tokens: int, batch_size: int = CONTENT_BATCH,
                    progress: bool = False) -> torch.Tensor:
    """Mean-pooled final hidden states of ``backbone`` over each text, standardized.  # (N, d)"""
    from karma_probe.core.tensors import length_sorted_batches, mean_pool, pad_right

    ids = [x[:max_tokens] for x in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    dev = next(backbone.parameters()).device
    pooled = torch.empty(len(ids), backbone.config.hidden_size)
    for idx in length_sorted_batches(ids, batch_size, progress, "item content"):
        x, m = (t.to(dev) for t in pad_right([ids[i] for i in idx], tokenizer.pad_token_id))
        h = backbone.model(input_ids=x, attention_mask=m, use_cache=False).last_hidden_state  # (B, T, d)
        pooled[idx] = mean_pool(h, m).float().cpu()  # (B, d)
    return (pooled - pooled.mean(0)) / pooled.std(0).clamp_min(1e-6)


def cached_content_vectors(spec: str, backbone, tokenizer, texts: list[str], max_tokens: int,
                           progress: bool = False) -> torch.Tensor:
    """:func:`content_vectors`, cached under the model cache for a named pretrained backbone.

    The key is the backbone spec, the token budget and a hash of the texts, so another dataset or
    another rendering of the items never reuses a stale table. ``tiny`` is random-init per seed
    and cheap: it is never cached.
    """
    from karma_probe.model.backbones import SMOLLM2, cache_dir
    from karma_probe.rundir import load_tensors, save_tensors

    if spec != SMOLLM2:
        return content_vectors(backbone, tokenizer, texts, max_tokens, progress=progress)
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = Path(cache_dir()) / "content" / f"{spec}-t{max_tokens}-{key}.safetensors"
    if path.is_file():
        return load_tensors(path, "cached item content vectors")["content"]
    content = content_vectors(backbone, tokenizer, texts, max_tokens, progress=progress)
    save_tensors(path, {"content": content})
    return content


class ItemTokens(nn.Module):
    """Item indices → LLM input embeddings, and the catalogue table the interest is scored against."""

    def __init__(self, content: torch.Tensor, width: int, embed_dim: int, token_scale: float = 1.0):
        super().__init__()
        n, c = content.shape
        self.register_buffer("content", content.float().clone())  # (N, c), saved with the heads
        self.in_proj = nn.Linear(c, width)
        self.id_in = nn.Embedding(n, width)
        self.item_head = nn.Linear(c, embed_dim)
        self.id_out = nn.Embedding(n, embed_dim)
        self.bias = nn.Parameter(torch.zeros(n))
        self.token_scale = token_scale
        self.reset_parameters()

    def reset_parameters(self) -> None:
        c = self.content.shape[1]
        # content is standardized (unit variance per dim): outputs then have the std of a token embedding
        nn.init.normal_(self.in_proj.weight, std=self.token_scale / c ** 0.5)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.id_in.weight)
        self.item_head.reset_parameters()
        nn.init.zeros_(self.id_out.weight)
        nn.init.zeros_(self.bias)

    @property
    def n_items(self) -> int:
        return self.content.shape[0]

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Item indices (...,) → input embeddings (..., d)."""
        return self.in_proj(self.content[items]) + self.id_in(items)

    def table(self) -> torch.Tensor:
        """The L2-normed catalogue.  # (N, e)"""
        return F.normalize(self.item_head(self.content) + self.id_out.weight, dim=-1)
