"""Does the backbone still know language and facts? (``lm_ppl``, ``fact_acc``)

Fine-tuning only on the action objective moves the hidden states the LM head reads, so the
backbone's own next-token predictions degrade; these two numbers measure that on text that has
nothing to do with movies. Both run the run's backbone through its own LM head, unchanged.

- ``lm_ppl`` uses all general-text passages (``karma_probe.capture.probes.general_passages``,
  resources/passages.txt: 48 passages; the capture's ``text`` probe set is the first
  ``DEFAULT_TEXT_PROBES`` of them).
- ``fact_acc`` uses the 579 cloze facts in ``karma_probe/resources/facts.json`` (written for this
  project; see :func:`fact_correct` for the exact scoring rule).

Uncertainty: both get a 95 % percentile bootstrap interval over their items, with the project's
recipe (analyzers/bootstrap.py): ``fact_acc`` over facts (the mean of the per-fact hits),
``lm_ppl`` over passages (exp of the pooled per-token NLL of the resampled passages). The resample
indices depend only on the item count, so two runs' replicates pair up for a paired difference.

The untouched SmolLM2-135M-Instruct's scores and intervals are recorded in
resources/smollm2_reference.json (measured by scripts/knowledge_reference.py).
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from importlib import resources

import numpy as np

from karma_probe.analyzers import bootstrap
from karma_probe.analyzers.registry import Measurement, register
from karma_probe.rundir.analysis import Record

FACT_NEW_TOKENS = 8  # long enough for "Leonardo da Vinci", short enough that a wrong answer rarely drifts into the right one
FACT_BATCH = 32
PPL_MAX_TOKENS = 256  # passages are a few sentences (32-55 SmolLM2 tokens); the cap only guards odd inputs
PPL_BATCH = 8


@lru_cache(maxsize=1)
def load_facts() -> tuple[tuple[str, str], ...]:
    """The cloze facts as (prompt, answer) pairs, in file order."""
    raw = resources.files("karma_probe").joinpath("resources/facts.json").read_text(encoding="utf-8")
    return tuple((f["prompt"], f["answer"]) for f in json.loads(raw))


def fact_correct(continuation: str, answer: str) -> bool:
    """Scoring rule of ``fact_acc``: the answer occurs as a whole word or phrase, ignoring case,
    in the first line of the greedy continuation.

    "Whole" means not preceded or followed by a letter or digit, so "Rome" counts in " Rome." and
    " Rome, Italy" but not in " Romeo"; only the first line counts, so an answer that turns up
    after the model has moved on does not. For ("The capital of France is", "Paris"):
    " Paris.\n\nThe answer is" and " the city of Paris" are correct; " Parisian" and
    " Lyon.\nParis is ..." are wrong.
    """
    line = continuation.split("\n", 1)[0].casefold()
    return re.search(r"(?<!\w)" + re.escape(answer.casefold()) + r"(?!\w)", line) is not None


def greedy_continuations(backbone, tokenizer, prompts: list[str], max_new_tokens: int = FACT_NEW_TOKENS,
                         batch_size: int = FACT_BATCH) -> list[str]:
    """Greedy continuation of each prompt (no special tokens added), batched with left padding."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends on the right: real tokens must end there
    out = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", add_special_tokens=False, padding=True)
            enc = {k: v.to(backbone.device) for k, v in enc.items()}
            with torch.no_grad():
                ids = backbone.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)
            out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return out


def passage_nll(backbone, tokenizer, texts: list[str], max_tokens: int = PPL_MAX_TOKENS,
                batch_size: int = PPL_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Per text: Σ_{t≥2} −log p(x_t | x_<t) and the number of predicted tokens (n − 1), no special
    tokens added, each text cut at ``max_tokens``. Two float64 arrays of len(texts); a text of
    fewer than 2 tokens predicts nothing (0, 0)."""
    import torch
    import torch.nn.functional as F

    seqs = [s[:max_tokens] for s in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    nll, count = np.zeros(len(seqs)), np.zeros(len(seqs))
    scored = [i for i, s in enumerate(seqs) if len(s) >= 2]
    for start in range(0, len(scored), batch_size):
        rows = scored[start:start + batch_size]
        T = max(len(seqs[i]) for i in rows)
        ids = torch.full((len(rows), T), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for b, i in enumerate(rows):
            ids[b, :len(seqs[i])] = torch.tensor(seqs[i])
            mask[b, :len(seqs[i])] = 1
        ids, mask = ids.to(backbone.device), mask.to(backbone.device)
        with torch.no_grad():
            logits = backbone(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
        labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # position t predicts token t+1
        tok_nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")  # (B, T-1), 0 at pads
        nll[rows] = tok_nll.double().sum(1).cpu().numpy()
        count[rows] = (labels != -100).sum(1).cpu().numpy()
    return nll, count


def perplexity(backbone, tokenizer, texts: list[str], max_tokens: int = PPL_MAX_TOKENS, batch_size: int = PPL_BATCH) -> float:
    """exp(Σ NLL / Σ predicted tokens) over all texts: each text's tokens 2..n given their prefix."""
    nll, count = passage_nll(backbone, tokenizer, texts, max_tokens, batch_size)
    return math.exp(nll.sum() / count.sum())


def perplexity_interval(nll, count) -> bootstrap.Interval:
    """95 % bootstrap interval of the pooled perplexity over texts: replicate b is
    exp(Σ_{i∈b} nll_i / Σ_{i∈b} count_i), the texts resampled with replacement."""
    pooled = bootstrap.of_ratio(nll, count)  # replicates of the mean NLL per token
    return bootstrap.interval(np.exp(pooled.replicates))


def fact_hits(backbone, tokenizer, facts: tuple[tuple[str, str], ...] | None = None) -> np.ndarray:
    """1.0 for each fact (default: :func:`load_facts`) whose greedy continuation is correct
    (:func:`fact_correct`), else 0.0; in fact order."""
    facts = load_facts() if facts is None else facts
    outs = greedy_continuations(backbone, tokenizer, [p for p, _ in facts])
    return np.array([float(fact_correct(o, a)) for o, (_, a) in zip(outs, facts)])


def scores(backbone, tokenizer) -> dict:
    """``fact_acc`` and ``lm_ppl`` of a bare backbone with their intervals, as the reference file
    records them (resources/smollm2_reference.json; scripts/knowledge_reference.py writes it), and
    the per-item arrays they come from (``hits``, ``passage_nll``, ``passage_tokens``)."""
    from karma_probe.capture.probes import general_passages

    hits = fact_hits(backbone, tokenizer)
    nll, count = passage_nll(backbone, tokenizer, general_passages())
    return {"fact_acc": float(hits.mean()), "fact_acc_ci": bootstrap.of_mean(hits).as_list(),
            "fact_hits": int(hits.sum()), "n_facts": len(hits),
            "lm_ppl": math.exp(nll.sum() / count.sum()), "lm_ppl_ci": perplexity_interval(nll, count).as_list(),
            "n_passages": len(nll), "n_tokens": int(count.sum()),
            "hits": hits, "passage_nll": nll, "passage_tokens": count}


@register("lm_ppl", higher_is_better=False, needs=("model",))
def lm_ppl(inputs) -> Measurement:
    """Perplexity of the run's backbone on the general-text passages (all 48 of resources/passages.txt):
    exp(Σ_passages Σ_{t≥2} −log p(x_t | x_<t) / Σ_passages (n − 1)), no special tokens added,
    each passage cut at 256 tokens. 95 % interval: bootstrap over passages (:func:`perplexity_interval`).

    Range [1, vocab]; an untouched SmolLM2-135M-Instruct scores 16.3 [14.2, 19.1] (on the first 32
    passages, the v2 study's set: 14.2; resources/smollm2_reference.json). Lower = the backbone
    still models plain language. Reference: standard LM perplexity (Jelinek et al., 1977).
    """
    from karma_probe.capture.probes import general_passages

    model = inputs.model
    nll, count = passage_nll(model.backbone, model.tokenizer, general_passages())
    value = math.exp(nll.sum() / count.sum())
    return Measurement(value, (Record("lm_ppl", value, set="text"),), interval=perplexity_interval(nll, count))


@register("fact_acc", higher_is_better=True, needs=("model",))
def fact_acc(inputs) -> Measurement:
    """Cloze-fact accuracy: share of facts (resources/facts.json, 579 prompts such as
    "The capital of France is" → "Paris") whose greedy 8-token continuation contains the answer
    as a whole word on its first line (:func:`fact_correct`). 95 % interval: bootstrap over facts.

    Range [0, 1]; an untouched SmolLM2-135M-Instruct gets 0.585 [0.546, 0.623], 339 of 579 (on the
    first 66, the v2 study's set: 46, 0.697; resources/smollm2_reference.json).
    Higher = the backbone's knowledge survived fine-tuning. Reference: LAMA cloze probing
    (Petroni et al., "Language Models as Knowledge Bases?", EMNLP 2019).
    """
    model = inputs.model
    hits = fact_hits(model.backbone, model.tokenizer)
    value = float(hits.mean())
    return Measurement(value, (Record("fact_acc", value, set="facts"),), interval=bootstrap.of_mean(hits))
