"""The LLM retriever: a causal LM backbone, an interest head, an item tower, a reconstruction adapter.

Two input interfaces (core/config.py): ``continuous`` (default) and ``text``.

- **continuous**: each history item is ONE input embedding (``catalogue.ItemTokens``); the final
  hidden state after every position → ``interest_head`` → L2 norm is the interest embedding that
  predicts the next item; the catalogue table is ``ItemTokens.table()`` and a score is
  ``scale · cos(interest, item) + bias_item`` (the training logit).
- **text**: the history prompt (prompts.history_prompt) ends in the interest marker; the final
  hidden state at the marker's last token → ``interest_head`` → L2 norm. Item embedding: the
  backbone encodes the item's text, mean-pooled → ``item_head`` → L2 norm; a score is the cosine.
- **Reconstruction path** (L_rec, both): interest embedding → ``rec_adapter`` → k soft-prompt
  vectors fed to the same backbone as input embeddings, which then decodes the item text.

A ``KarmaModel`` without heads (``base_model``) wraps an untouched backbone (text interface): its
interest embedding is the normalized marker hidden state, its item embedding the normalized mean pool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from karma_probe.core.errors import BadInput
from karma_probe.core.tensors import batch_starts, length_sorted_batches, mean_pool, pad_right

HEADS_FILE = "heads.safetensors"


class KarmaModel(nn.Module):
    def __init__(self, backbone, tokenizer, *, embed_dim: int | None = 64, soft_prompts: int = 4,
                 temperature: float = 0.07, learn_temperature: bool = True, heads: bool = True,
                 interface: str = "text", content: torch.Tensor | None = None, prefix: Sequence[int] = ()):
        super().__init__()
        self.prefix = tuple(int(t) for t in prefix)  # continuous: token ids before the items (prompts.history_prefix_ids)
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.interface = interface
        d = backbone.config.hidden_size
        self.has_heads = heads
        self.soft_prompt_dim = d
        self.soft_prompts = soft_prompts
        self.embed_dim = embed_dim if heads else d
        self.catalogue = None
        if interface == "continuous":
            if not heads or content is None:
                raise BadInput("the continuous interface needs heads and the items' content vectors")
            from karma_probe.model.catalogue import ItemTokens

            scale = float(backbone.get_input_embeddings().weight.detach().float().std())
            self.catalogue = ItemTokens(content, d, embed_dim, token_scale=scale)
        if heads:
            self.interest_head = nn.Linear(d, embed_dim)
            if interface == "text":
                self.item_head = nn.Linear(d, embed_dim)
            self.rec_adapter = nn.Sequential(nn.Linear(embed_dim, d), nn.GELU(), nn.Linear(d, soft_prompts * d))
            self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)

    # ------------------------------------------------------------------ encoders (differentiable)

    def hidden(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> torch.Tensor:
        """Final (normed) hidden states of the backbone.  # (B, T, d)"""
        # base_model: the decoder without its LM head, whatever the architecture calls it (GPT-2: transformer)
        out = self.backbone.base_model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                       use_cache=False)
        return out.last_hidden_state

    def history_inputs(self, codes: torch.Tensor) -> torch.Tensor:
        """Continuous interface: codes (B, T) → one input embedding per position (B, T, d).

        A code >= 0 is an item index (its item token, catalogue.ItemTokens); a code < 0 is the
        prefix token ``-(code + 1)`` (prompts.history_codes), embedded by the backbone's own table.
        """
        emb = self.catalogue(codes.clamp(min=0))  # (B, T, d)
        is_token = codes < 0
        if is_token.any():
            tokens = self.backbone.get_input_embeddings()((-codes - 1).clamp(min=0))  # (B, T, d)
            emb = torch.where(is_token[..., None], tokens.to(emb.dtype), emb)
        return emb

    def history_sequence(self, items: Sequence[int], max_items: int | None = None) -> list[int]:
        """The continuous input codes of a history: the prefix, then its newest ``max_items`` items."""
        from karma_probe.data.prompts import history_codes

        items = list(items)
        return history_codes(self.prefix, items[-max_items:] if max_items else items)

    def scale(self, max_scale: float = 100.0) -> torch.Tensor:
        """The inverse temperature of the action logits."""
        return self.log_scale.exp().clamp(max=max_scale)

    def interest_from_hidden(self, h_marker: torch.Tensor) -> torch.Tensor:
        """(B, d) marker hidden states → (B, e) L2-normed interest embeddings."""
        z = self.interest_head(h_marker) if self.has_heads else h_marker
        return F.normalize(z, dim=-1)

    def encode_items(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Item token ids (B, T) → (B, e) L2-normed item embeddings (mean pool over real tokens)."""
        pooled = mean_pool(self.hidden(input_ids, attention_mask), attention_mask)  # (B, d)
        z = self.item_head(pooled) if self.has_heads else pooled
        return F.normalize(z, dim=-1)

    def soft_prompt(self, interest: torch.Tensor) -> torch.Tensor:
        """(B, e) → (B, k, d) soft-prompt vectors for the reconstruction path."""
        return self.rec_adapter(interest).view(interest.shape[0], self.soft_prompts, self.soft_prompt_dim)

    def reconstruction_logits(self, interest: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor):
        """Teacher-forced decoding of the target text from the interest embedding alone.

        Input: [soft_1..soft_k, t_1..t_{n-1}]; the position before each target token predicts it.
        Returns (logits (N, V), labels (N,)) for the N real (non-padding) target tokens: the LM
        head, the costliest part of the path, runs only where a label is scored.
        """
        if not self.has_heads:
            raise BadInput("this model has no reconstruction path (untouched backbone without heads)")
        soft = self.soft_prompt(interest)  # (B, k, d)
        tok_emb = self.backbone.get_input_embeddings()(target_ids)  # (B, n, d)
        embeds = torch.cat([soft, tok_emb[:, :-1]], dim=1)  # (B, k+n-1, d)
        k = soft.shape[1]
        mask = torch.cat([torch.ones(target_ids.shape[0], k, dtype=target_mask.dtype, device=target_mask.device),
                          target_mask[:, :-1]], dim=1)
        h = self.hidden(inputs_embeds=embeds, attention_mask=mask)[:, k - 1:]  # (B, n, d)
        sel = target_mask.bool()  # (B, n)
        return self.backbone.lm_head(h[sel]), target_ids[sel]  # (N, V), (N,)

    def hidden_and_cache(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor):
        """Final hidden states (B, T, d) and the key/value cache of a forward pass (in the autograd graph)."""
        out = self.backbone.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=True)
        return out.last_hidden_state, out.cache

    def continuation_logits(self, h: torch.Tensor, cache, rows: torch.Tensor, cols: torch.Tensor,
                            target_ids: torch.Tensor, target_mask: torch.Tensor):
        """Teacher-forced decoding of a text after history position ``cols[p]`` of sequence ``rows[p]``.

        The history is not run again: the text tokens attend to the forward pass's cached keys and
        values of positions ≤ col (later ones masked out), at positions col+1, col+2, ... The hidden
        state at col predicts t_1; t_j predicts t_{j+1}. Equal to running [history ≤ col, text]
        from scratch (tests/test_train.py), at the cost of the text tokens alone.
        Returns (logits (N, V), labels (N,)) for the N real target tokens.
        """
        from transformers import DynamicCache

        T, n = h.shape[1], target_ids.shape[1]
        kv = DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in cache.layers],
                          config=self.backbone.config)
        seen = (torch.arange(T, device=h.device)[None] <= cols[:, None]).to(target_mask.dtype)  # (P, T)
        mask = torch.cat([seen, target_mask[:, :-1]], dim=1)  # (P, T+n-1)
        pos = cols[:, None] + 1 + torch.arange(n - 1, device=h.device)[None]  # (P, n-1)
        text = self.backbone.get_input_embeddings()(target_ids[:, :-1])  # (P, n-1, d)
        h_text = self.backbone.model(inputs_embeds=text, attention_mask=mask, position_ids=pos, cache=kv,
                                     use_cache=True).last_hidden_state  # (P, n-1, d)
        states = torch.cat([h[rows, cols][:, None], h_text], dim=1)  # (P, n, d): the state before each t_j
        sel = target_mask.bool()
        return self.backbone.lm_head(states[sel]), target_ids[sel]  # (N, V), (N,)

    # ------------------------------------------------------------------ tokenization

    def tokenize(self, texts: list[str], max_tokens: int | None = None) -> list[list[int]]:
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [x[:max_tokens] if max_tokens else x for x in ids]

    def pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad token lists → (ids (B, T), mask (B, T)) on the model's device."""
        ids, mask = pad_right(seqs, self.tokenizer.pad_token_id)
        return ids.to(self.device), mask.to(self.device)

    def check_catalogue(self, n_items: int, where: str = "this checkpoint") -> None:
        """A continuous model scores the catalogue it was trained on: refuse a dataset of another size."""
        if self.catalogue is not None and self.catalogue.n_items != n_items:
            raise BadInput(f"{where} has item tokens for {self.catalogue.n_items} items, the dataset has {n_items} "
                           "(a checkpoint of another dataset?)")

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    # ------------------------------------------------------------------ inference API (no grad)

    @torch.no_grad()
    def interest_embeddings(self, prompts: list[str], batch_size: int = 16, progress: bool = False) -> torch.Tensor:
        """Interest embeddings of rendered history prompts (text interface).  # (N, e)"""
        if self.interface == "continuous":
            raise BadInput("a continuous-interface model reads item histories, not prompts: use interest_for")
        out = []
        for i in batch_starts(len(prompts), batch_size, progress, "interest"):
            seqs = self.tokenize(prompts[i : i + batch_size])
            ids, mask = self.pad(seqs)
            h = self.hidden(ids, mask)  # (B, T, d)
            last = mask.sum(1) - 1  # marker = last real token (right padding)
            out.append(self.interest_from_hidden(h[torch.arange(len(seqs)), last]).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.embed_dim)

    @torch.no_grad()
    def interest_for(self, histories: Sequence[Sequence[int]], max_items: int, batch_size: int = 16,
                     progress: bool = False, *, items: Sequence | None = None) -> torch.Tensor:
        """Interest embeddings after each history (item indices, oldest first; the newest
        ``max_items`` are used), in either interface.  # (N, e)

        The text interface renders each history as a prompt, so it needs the catalogue's ``items``
        (``data.Item``s, indexed by item index); the continuous interface reads its own item tokens.
        """
        if self.interface == "text":
            from karma_probe.data.prompts import history_prompt

            items = _need_items(items, "interest_for")
            return self.interest_embeddings([history_prompt([items[i] for i in h], max_items) for h in histories],
                                            batch_size=batch_size, progress=progress)
        out = []
        seqs = [self.history_sequence(h, max_items) for h in histories]
        for i in batch_starts(len(seqs), batch_size, progress, "interest"):
            ids, mask = pad_right(seqs[i: i + batch_size], 0)
            ids, mask = ids.to(self.device), mask.to(self.device)
            h = self.hidden(inputs_embeds=self.history_inputs(ids), attention_mask=mask)  # (B, T, d)
            last = mask.sum(1) - 1  # the newest item: its hidden state predicts the next one
            out.append(self.interest_from_hidden(h[torch.arange(len(ids)), last]).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.embed_dim)

    @torch.no_grad()
    def item_table(self, max_tokens: int | None = None, batch_size: int = 64, progress: bool = False, *,
                   items: Sequence | None = None) -> torch.Tensor:
        """The catalogue's L2-normed item embeddings, in either interface.  # (n_items, e)

        The text interface encodes each of ``items`` (``data.Item``s) as text; the continuous
        interface's table is its item tokens (``items``, if given, must match their count).
        """
        if self.interface == "continuous":
            if items is not None:
                self.check_catalogue(len(items))
            return self.catalogue.table().float().cpu()
        from karma_probe.data.prompts import item_text

        return self.item_embeddings([item_text(it) for it in _need_items(items, "item_table")], batch_size=batch_size,
                                    max_tokens=max_tokens, progress=progress)

    @torch.no_grad()
    def scores(self, interest: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Ranking scores (N, n_items): the training logits (continuous) or the cosine (text)."""
        if self.interface == "continuous":
            return (self.scale().float().cpu() * interest @ table.T + self.catalogue.bias.detach().float().cpu())
        return interest @ table.T

    @torch.no_grad()
    def item_embeddings(self, texts: list[str], batch_size: int = 64, max_tokens: int | None = None,
                        progress: bool = False) -> torch.Tensor:
        """Item embeddings of item texts.  # (N, e)"""
        seqs = self.tokenize(texts, max_tokens)
        out = torch.empty(len(seqs), self.embed_dim)
        for idx in length_sorted_batches(seqs, batch_size, progress, "items"):
            ids, mask = self.pad([seqs[j] for j in idx])
            out[idx] = self.encode_items(ids, mask).float().cpu()
        return out

    @torch.no_grad()
    def reconstruct_greedy(self, interest: torch.Tensor, max_new_tokens: int = 32) -> list[str]:
        """Greedy decoding of item text from interest embeddings through the reconstruction path."""
        if not self.has_heads:
            raise BadInput("this model has no reconstruction path (untouched backbone without heads)")
        interest = interest.to(self.device)
        embeds = self.soft_prompt(interest)  # (B, k, d)
        emb_layer = self.backbone.get_input_embeddings()
        eos = self.tokenizer.eos_token_id
        B = interest.shape[0]
        tokens = torch.zeros(B, 0, dtype=torch.long, device=self.device)
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        for _ in range(max_new_tokens):
            h = self.hidden(inputs_embeds=embeds)[:, -1]  # (B, d)
            nxt = self.backbone.lm_head(h).argmax(-1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= nxt == eos
            if done.all():
                break
            embeds = torch.cat([embeds, emb_layer(nxt)[:, None]], dim=1)
        texts = []
        for row in tokens.tolist():
            row = row[: row.index(eos)] if eos in row else row
            texts.append(self.tokenizer.decode(row))
        return texts

    # ------------------------------------------------------------------ persistence

    def head_state(self) -> dict[str, torch.Tensor]:
        if not self.has_heads:
            return {}
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def save(self, directory: str | Path, extra_state: dict | None = None) -> None:
        """Backbone as an HF directory (save_pretrained, safetensors) + heads.safetensors."""
        from karma_probe.rundir import STATE, save_tensors, write_json

        directory = Path(directory)
        self.backbone.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        if self.has_heads:
            save_tensors(directory / HEADS_FILE, self.head_state())
        write_json(directory / STATE, extra_state or {})


def _need_items(items, what: str):
    if items is None:
        raise BadInput(f"{what}: a text-interface model renders items as text; pass the catalogue's items")
    return items


# ---------------------------------------------------------------------- building and loading


def build_model(cfg, *, dataset=None, progress: bool = False) -> KarmaModel:
    """A fresh retriever for ``cfg``: the backbone as loaded, heads (and item tokens) newly initialized.

    The continuous interface's content vectors come from this untouched backbone, before any
    training (cached for SmolLM2, see catalogue.py), over ``dataset``'s items; the model keeps the
    vectors, not the dataset.
    """
    from karma_probe.model.backbones import load_backbone

    torch.manual_seed(cfg.seed)
    backbone, tok = load_backbone(cfg.model, seed=cfg.seed)
    content, prefix = None, ()
    if cfg.interface == "continuous":
        from karma_probe.model.catalogue import cached_content_vectors
        from karma_probe.data.prompts import history_prefix_ids

        prefix = history_prefix_ids(tok, cfg.first_token)
        from karma_probe.data.prompts import item_text

        if dataset is None:
            raise BadInput("the continuous interface needs the dataset's catalogue to build item tokens")
        content = cached_content_vectors(cfg.model, backbone, tok, [item_text(it) for it in dataset.items],
                                         cfg.max_target_tokens, progress=progress)
    model = KarmaModel(backbone, tok, embed_dim=cfg.embed_dim, soft_prompts=cfg.soft_prompts,
                       temperature=cfg.temperature, learn_temperature=cfg.learn_temperature,
                       interface=cfg.interface, content=content, prefix=prefix)
    # Heads are initialized after the backbone from their own seed, so tiny and real backbones
    # get the same head initialization for the same seed.
    torch.manual_seed(cfg.seed + 1)
    for m in (model.interest_head, getattr(model, "item_head", None), *model.rec_adapter):
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    if model.catalogue is not None:
        model.catalogue.reset_parameters()
    return model


def base_model(spec: str = "smollm2-135m", *, adapter: str | None = None, placement=None) -> KarmaModel:
    """An untouched backbone without heads: the 'before fine-tuning' reference (text interface);
    also a user's own model (``adapter`` merged in, on ``placement``'s device and dtype)."""
    from karma_probe.model.backbones import load_backbone

    backbone, tok = load_backbone(spec, adapter=adapter, placement=placement)
    return KarmaModel(backbone, tok, heads=False)


def checkpoint_config(checkpoint: str | Path):
    """``(TrainConfig, condition)`` of a checkpoint directory (its state.json, else its run's config.json)."""
    from karma_probe.core.config import TrainConfig
    from karma_probe.rundir import checkpoint_train

    train, condition = checkpoint_train(checkpoint)
    return TrainConfig.from_dict(train), condition


def load_checkpoint(checkpoint: str | Path, placement=None):
    """Load a checkpoint directory → ``(KarmaModel, tokenizer, TrainConfig)``; no dataset is read.

    A checkpoint of a run captured as loaded (condition ``base`` or ``model``) without heads loads
    as the bare backbone. ``placement``: device and dtype (karma_probe.core.device; default CPU, fp32).
    """
    from karma_probe.model.backbones import load_backbone
    from karma_probe.rundir import CONFIG, load_tensors
    from karma_probe.rundir.layout import UNTRAINED

    ckpt = Path(checkpoint)
    if not (ckpt / CONFIG).is_file():
        raise BadInput(f"{ckpt}: checkpoint not found (no {CONFIG})")
    weights = ckpt / "model.safetensors"
    if not weights.is_file():
        raise BadInput(f"{weights}: checkpoint weights not found")
    cfg, condition = checkpoint_config(ckpt)
    try:
        backbone, tok = load_backbone(str(ckpt), placement=placement)
    except BadInput:
        raise
    except Exception as e:  # safetensors raises its own types on truncated files
        raise BadInput(f"{ckpt}: cannot load the checkpoint (truncated or corrupt?): {str(e).splitlines()[0]}") from None
    heads_file = ckpt / HEADS_FILE
    if condition in UNTRAINED and not heads_file.is_file():
        return KarmaModel(backbone, tok, heads=False), tok, cfg
    heads = load_tensors(heads_file, "heads file")
    content = heads.get("catalogue.content")
    if cfg.interface == "continuous" and content is None:
        raise BadInput(f"{heads_file}: no item content vectors (a checkpoint of the text interface?)")
    from karma_probe.data.prompts import history_prefix_ids

    model = KarmaModel(backbone, tok, embed_dim=cfg.embed_dim, soft_prompts=cfg.soft_prompts,
                       temperature=cfg.temperature, learn_temperature=cfg.learn_temperature,
                       interface=cfg.interface, content=content,
                       prefix=history_prefix_ids(tok, cfg.first_token) if cfg.interface == "continuous" else ())
    missing, unexpected = model.load_state_dict(heads, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise BadInput(f"{heads_file}: heads do not match this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if placement is not None:
        model.to(device=placement.device, dtype=placement.torch_dtype)
    model.eval()
    return model, tok, cfg


def load_run_model(run_dir: str | Path, checkpoint: str | Path | None = None, placement=None):
    """Load a run's model → ``(KarmaModel, tokenizer, TrainConfig)``.

    ``checkpoint`` is None (the run's final ``checkpoint/``) or a directory such as
    ``RUN/checkpoints/step-000100``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInput(f"{run_dir}: run directory not found")
    from karma_probe.rundir import RunPaths

    return load_checkpoint(Path(checkpoint) if checkpoint else RunPaths(run_dir).checkpoint, placement)
