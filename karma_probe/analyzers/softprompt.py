"""A post-hoc soft-prompt decoder: how much of an item's text can be read out of an embedding?

The run's own reconstruction path only exists (trained) when L_rec was on, so it cannot judge an
action-only run fairly. This decoder is the same for every run: a fresh linear adapter
e → k×d soft-prompt vectors, trained for a fixed budget with the run's backbone **frozen** to decode
the target item's text from the interest embedding, fitted on one split and scored on another.
Whatever it reaches reflects what the embedding carries (and what the frozen backbone can read),
not how long anyone tuned it.

Layout (as the run's own path, retriever.KarmaModel.reconstruction_logits):
input ``[s_1 … s_k, t_1 … t_{n−1}]``, position k−1+t predicts t_{t+1} (t_1 from s_k).

The budget is fixed for every run by the constants below (changing any of them changes every
``probe_decode_acc``, so compare only analyses made with the same values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DECODER_PROMPTS = 4  # k soft-prompt vectors, as the run's own adapter (TrainConfig.soft_prompts)
DECODER_STEPS = 40  # ~1.7 passes over the 192 fit examples (cost: benchmarks/README.md)
DECODER_BATCH = 8
DECODER_LR = 3e-3  # Adam; high because the budget is short and only the adapter learns
DECODER_MAX_TOKENS = 16  # target tokens incl. the final EOS: title, year and the first genres
DECODER_SEED = 0


@dataclass(frozen=True)
class DecoderBudget:
    prompts: int = DECODER_PROMPTS
    steps: int = DECODER_STEPS
    batch_size: int = DECODER_BATCH
    lr: float = DECODER_LR
    max_tokens: int = DECODER_MAX_TOKENS
    seed: int = DECODER_SEED


class SoftPromptDecoder:
    """scikit-learn style: ``__init__`` stores the budget, ``fit`` returns self, fitted state ends in ``_``."""

    def __init__(self, backbone, tokenizer, budget: DecoderBudget = DecoderBudget()):
        self.backbone, self.tokenizer, self.budget = backbone, tokenizer, budget

    # ----------------------------------------------------------------- data

    def _targets(self, texts: list[str]) -> list[list[int]]:
        n, eos = self.budget.max_tokens, self.tokenizer.eos_token_id
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [t[: n - 1] + [eos] for t in ids]

    def _batch(self, E, targets: list[list[int]]):
        """→ (embeds (B, k+n−1, d), attention mask (B, k+n−1), labels (B, n) with −100 at padding)."""
        import torch

        from karma_probe.core.tensors import pad_right

        dev = self.backbone.device
        B = len(targets)
        ids, mask = pad_right(targets, self.tokenizer.pad_token_id)
        ids, mask = ids.to(dev), mask.to(dev)
        soft = self.soft_prompt(E)  # (B, k, d)
        tok = self.backbone.get_input_embeddings()(ids)  # (B, n, d)
        embeds = torch.cat([soft, tok[:, :-1]], dim=1)  # (B, k+n-1, d)
        attn = torch.cat([torch.ones(B, soft.shape[1], dtype=mask.dtype, device=dev), mask[:, :-1]], dim=1)
        return embeds, attn, ids.masked_fill(mask == 0, -100)

    def soft_prompt(self, E):
        import torch

        E = torch.as_tensor(np.asarray(E), dtype=torch.float32, device=self.backbone.device)
        k, d = self.budget.prompts, self.backbone.config.hidden_size
        return self.adapter_(E).view(E.shape[0], k, d)  # (B, k, d)

    def _logits_and_labels(self, E, targets):
        """Logits only where a label is scored (the LM head is a fifth of SmolLM2's compute)."""
        embeds, attn, labels = self._batch(E, targets)
        k = self.budget.prompts
        h = self.backbone.model(inputs_embeds=embeds, attention_mask=attn, use_cache=False).last_hidden_state
        h = h[:, k - 1:]  # (B, n, d): position k-1+t predicts target token t
        sel = labels != -100
        return self.backbone.lm_head(h[sel]), labels[sel]  # (N_tok, V), (N_tok,)

    # ----------------------------------------------------------------- fit / score / decode

    def fit(self, E: np.ndarray, texts: list[str], progress: bool = False) -> "SoftPromptDecoder":
        import torch
        import torch.nn.functional as F
        from torch import nn

        b = self.budget
        torch.manual_seed(b.seed)
        emb = self.backbone.get_input_embeddings().weight.detach()
        d, e = emb.shape[1], E.shape[1]
        self.adapter_ = nn.Linear(e, b.prompts * d).to(self.backbone.device)
        with torch.no_grad():
            # Start from the mean token embedding (an in-distribution input) with a small
            # embedding-dependent part of the vocabulary's own scale, so step 0 is a sane prompt.
            self.adapter_.bias.copy_(emb.mean(0).repeat(b.prompts))
            self.adapter_.weight.normal_(0.0, float(emb.std()) / np.sqrt(e))
        targets = self._targets(texts)
        gen = torch.Generator().manual_seed(b.seed)
        epochs = -(-b.steps * b.batch_size // len(targets))  # ceil: every step gets a full batch
        order = [i for _ in range(epochs) for i in torch.randperm(len(targets), generator=gen).tolist()]
        opt = torch.optim.Adam(self.adapter_.parameters(), lr=b.lr)
        flags = [p.requires_grad for p in self.backbone.parameters()]
        self.losses_ = []
        steps = range(b.steps)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="probe_decode_acc: fit decoder", unit="step", leave=False)
        try:
            for p in self.backbone.parameters():  # frozen: gradients reach only the adapter
                p.requires_grad_(False)
            with torch.enable_grad():
                for s in steps:
                    idx = order[s * b.batch_size:(s + 1) * b.batch_size]
                    logits, labels = self._logits_and_labels(E[idx], [targets[i] for i in idx])
                    loss = F.cross_entropy(logits, labels)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    self.losses_.append(loss.detach().item())
        finally:
            for p, f in zip(self.backbone.parameters(), flags):
                p.requires_grad_(f)
        return self

    def token_accuracy(self, E: np.ndarray, texts: list[str], batch_size: int = 16) -> float:
        """Teacher-forced share of target tokens (EOS included) that are the argmax prediction."""
        hits, counts = self.token_hits(E, texts, batch_size)
        return int(hits.sum()) / int(counts.sum())

    def token_hits(self, E: np.ndarray, texts: list[str], batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Per text: (correctly predicted target tokens [N], scored target tokens [N]), teacher-forced."""
        import torch

        targets = self._targets(texts)
        hits, counts = [], []
        with torch.no_grad():
            for i in range(0, len(targets), batch_size):
                batch = targets[i:i + batch_size]
                logits, labels = self._logits_and_labels(E[i:i + batch_size], batch)
                n = [len(t) for t in batch]  # labels are the batch's real tokens, text by text
                right = (logits.argmax(-1) == labels).split(n)
                hits += [int(r.sum()) for r in right]
                counts += n
        return np.array(hits), np.array(counts)

    def decode(self, E: np.ndarray, max_new_tokens: int | None = None) -> list[str]:
        """Greedy decoding from the soft prompt alone (for samples in analysis.json)."""
        import torch

        n = max_new_tokens or self.budget.max_tokens
        eos = self.tokenizer.eos_token_id
        emb_layer = self.backbone.get_input_embeddings()
        with torch.no_grad():
            embeds = self.soft_prompt(E)  # (B, k, d)
            tokens = []
            for _ in range(n):
                h = self.backbone.model(inputs_embeds=embeds, use_cache=False).last_hidden_state[:, -1]
                nxt = self.backbone.lm_head(h).argmax(-1)  # (B,)
                tokens.append(nxt)
                embeds = torch.cat([embeds, emb_layer(nxt)[:, None]], dim=1)
        rows = torch.stack(tokens, 1).tolist()
        return [self.tokenizer.decode(r[: r.index(eos)] if eos in r else r) for r in rows]
