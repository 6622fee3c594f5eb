"""Training batches: seeded per step, so a resumed run sees exactly the batches it would have seen.

- :class:`SequenceBatchMaker` (continuous interface): windows of up to ``max_history + 1`` items
  ending at a sampled training target; every position predicts the next item. ``reg_positions``
  positions per window are sampled for L_gen / L_rec, with the text of the item they predict.
- :class:`BatchMaker` (text interface): history prompts (optionally with the target item's text
  appended for L_gen), the unique target items plus sampled negatives for the item tower (L_act),
  and the target text alone for the reconstruction path (L_rec).

``make_batches`` picks the one for the config.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from karma_probe.core.config import TrainConfig
from karma_probe.core.errors import BadInput
from karma_probe.core.tensors import pad_right as _pad
from karma_probe.data.dataset import Dataset, Example, Examples
from karma_probe.data.prompts import history_codes, history_prefix_ids, history_prompt, item_text, target_text


class BatchMaker:
    def __init__(self, cfg: TrainConfig, dataset: Dataset, examples: Sequence[Example], tokenizer, *, rank: int = 0):
        self.cfg, self.ds, self.examples, self.tok, self.rank = cfg, dataset, Examples.of(examples), tokenizer, rank
        enc = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
        n = cfg.max_target_tokens
        self.item_tokens = [t[:n] for t in enc([item_text(it) for it in dataset.items])]
        self.target_tokens = [t[: n - 1] + [tokenizer.eos_token_id] for t in enc([target_text(it) for it in dataset.items])]

    def generator(self, step: int) -> torch.Generator:
        # The batch of step s depends only on (seed, rank, s): resuming needs no sampler state.
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.rank * 10_007 + step)

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        g = self.generator(step)
        return self.make(self.pick(g), g)

    def pick(self, g: torch.Generator) -> list[Example]:
        # a batch reads only the newest max_history items of each history: a long user costs nothing more
        picks = torch.randint(len(self.examples), (self.cfg.batch_size,), generator=g).tolist()
        return [self.examples.window(i, self.cfg.max_history) for i in picks]

    def make(self, exs: list[Example], g: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        cfg, pad = self.cfg, self.tok.pad_token_id
        prompts = [history_prompt([self.ds.items[i] for i in e.history], cfg.max_history) for e in exs]
        prompt_ids = self.tok(prompts, add_special_tokens=False)["input_ids"]
        with_gen = cfg.lambda_gen > 0
        seqs, labels, marker = [], [], []
        for p, e in zip(prompt_ids, exs):
            tgt = self.target_tokens[e.target] if with_gen else []
            seqs.append(p + tgt)
            # position t predicts token t+1: label the marker and the target tokens but the last
            labels.append([-100] * (len(p) - 1) + tgt + [-100] if with_gen else [])
            marker.append(len(p) - 1)
        batch = {"marker_pos": torch.tensor(marker)}
        batch["input_ids"], batch["attention_mask"] = _pad(seqs, pad)
        if with_gen:
            batch["gen_labels"], _ = _pad(labels, -100)

        # Item tower: the unique targets, then sampled negatives (not equal to any target).
        targets = [e.target for e in exs]
        uniq = list(dict.fromkeys(targets))
        if cfg.sampled_negatives and g is not None:
            seen = set(uniq)
            for j in torch.randint(len(self.ds.items), (cfg.sampled_negatives * 2,), generator=g).tolist():
                if j not in seen and len(uniq) < len(set(targets)) + cfg.sampled_negatives:
                    seen.add(j)
                    uniq.append(j)
        pos = {item: k for k, item in enumerate(uniq)}
        batch["item_ids"], batch["item_mask"] = _pad([self.item_tokens[i] for i in uniq], pad)
        batch["target_index"] = torch.tensor([pos[t] for t in targets])
        if cfg.lambda_rec > 0:
            batch["target_ids"], batch["target_mask"] = _pad([self.target_tokens[t] for t in targets], pad)
        batch["n_tokens"] = torch.tensor(int(batch["attention_mask"].sum() + batch["item_mask"].sum()
                                             + (batch["target_mask"].sum() if "target_mask" in batch else 0)))
        return batch



class SequenceBatchMaker:
    """Continuous-interface batches. Keys, with B windows of at most T = max_history items:

    items (B, T), mask (B, T): the history codes, right-padded: the prefix tokens (codes < 0,
        prompts.history_codes; none with ``first_token="none"``), then the item indices
    targets (B, T): the next item after each item position (−100 at the prefix and padding)
    reg_row, reg_col (P,): item positions sampled for L_gen / L_rec (P ≤ B · reg_positions)
    reg_ids, reg_mask (P, n): the text of the item each sampled position predicts (EOS last)
    """

    def __init__(self, cfg: TrainConfig, dataset: Dataset, examples: Sequence[Example], tokenizer, *, rank: int = 0):
        self.cfg, self.ds, self.examples, self.tok, self.rank = cfg, dataset, Examples.of(examples), tokenizer, rank
        n = cfg.max_target_tokens
        ids = tokenizer([target_text(it) for it in dataset.items], add_special_tokens=False)["input_ids"]
        self.target_tokens = [t[: n - 1] + [tokenizer.eos_token_id] for t in ids]
        self.prefix = history_prefix_ids(tokenizer, cfg.first_token)

    generator, pick = BatchMaker.generator, BatchMaker.pick

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        g = self.generator(step)
        return self.make(self.pick(g), g)

    def make(self, exs: list[Example], g: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        windows = [(tuple(e.history) + (e.target,))[-(cfg.max_history + 1):] for e in exs]
        batch = {}
        P = len(self.prefix)
        batch["items"], batch["mask"] = _pad([history_codes(self.prefix, w[:-1]) for w in windows], 0)
        batch["targets"], _ = _pad([[-100] * P + list(w[1:]) for w in windows], -100)
        if cfg.lambda_gen > 0 or cfg.lambda_rec > 0:
            g = g or torch.Generator().manual_seed(0)
            rows, cols = [], []
            for b, w in enumerate(windows):
                n = len(w) - 1
                for c in torch.randperm(n, generator=g)[: cfg.reg_positions].tolist():
                    rows.append(b)
                    cols.append(P + c)
            batch["reg_row"], batch["reg_col"] = torch.tensor(rows), torch.tensor(cols)
            picked = [self.target_tokens[windows[b][c - P + 1]] for b, c in zip(rows, cols)]
            batch["reg_ids"], batch["reg_mask"] = _pad(picked, self.tok.pad_token_id)
        if cfg.act_loss == "inbatch" and cfg.sampled_negatives:
            g = g or torch.Generator().manual_seed(0)
            batch["negatives"] = torch.randint(len(self.ds.items), (cfg.sampled_negatives,), generator=g)
        batch["n_tokens"] = torch.tensor(int(batch["mask"].sum() + (batch["reg_mask"].sum() if "reg_mask" in batch else 0)))
        return batch


def make_batches(cfg: TrainConfig, dataset: Dataset, examples: Sequence[Example], tokenizer, *, rank: int = 0):
    """The batch maker of the config's interface."""
    if not examples:
        # a user gives a training example only from a 4th interaction on (history, target, then
        # the valid and test items); without one there is nothing to sample a batch from
        raise BadInput(f"dataset {dataset.name!r} has no training examples: no user has 4 or more interactions")
    cls = SequenceBatchMaker if cfg.interface == "continuous" else BatchMaker
    return cls(cfg, dataset, examples, tokenizer, rank=rank)
