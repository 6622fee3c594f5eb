"""Does the backbone still know language and facts? (``lm_ppl``, ``fact_acc``)

Fine-tuning only on the action objective moves the hidden states the LM head reads, so the
backbone's own next-token predictions degrade; these two numbers measure that on text that has
nothing to do with movies. Both run the run's backbone through its own LM head, unchanged.

- ``lm_ppl`` uses the general-text passages of the capture's ``text`` probe set
  (``karma_probe.capture.probes.general_passages``, resources/passages.txt).
- ``fact_acc`` uses the cloze facts in ``karma_probe/resources/facts.json`` (written for this
  project; see :func:`fact_correct` for the exact scoring rule).

The untouched SmolLM2-135M-Instruct scores are recorded in resources/smollm2_reference.json.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from importlib import resources

from karma_probe.analyzers.registry import Measurement, Record, register

FACT_NEW_TOKENS = 8  # long enough for "Leonardo da Vinci", short enough that a wrong answer rarely drifts into the right one
FACT_BATCH = 32
PPL_MAX_TOKENS = 256  # passages are a few sentences (~60-100 tokens); the cap only guards odd inputs
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


def perplexity(backbone, tokenizer, texts: list[str], max_tokens: int = PPL_MAX_TOKENS, batch_size: int = PPL_BATCH) -> float:
    """exp(Σ NLL / Σ predicted tokens) over all texts: each text's tokens 2..n given their prefix."""
    import torch
    import torch.nn.functional as F

    seqs = [s[:max_tokens] for s in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    seqs = [s for s in seqs if len(s) >= 2]
    nll, count = 0.0, 0
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i:i + batch_size]
        T = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), T), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), T), dtype=torch.long)
        for b, s in enumerate(chunk):
            ids[b, :len(s)] = torch.tensor(s)
            mask[b, :len(s)] = 1
        ids, mask = ids.to(backbone.device), mask.to(backbone.device)
        with torch.no_grad():
            logits = backbone(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
        labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # position t predicts token t+1
        nll += float(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"))
        count += int((labels != -100).sum())
    return math.exp(nll / count)


@register("lm_ppl", higher_is_better=False, needs=("model",))
def lm_ppl(inputs) -> Measurement:
    """Perplexity of the run's backbone on the general-text passages:
    exp(Σ_passages Σ_{t≥2} −log p(x_t | x_<t) / Σ_passages (n − 1)), no special tokens added,
    each passage cut at 256 tokens.

    Range [1, vocab]; an untouched SmolLM2-135M-Instruct scores ~14 (see
    resources/smollm2_reference.json). Lower = the backbone still models plain language.
    Reference: standard LM perplexity (Jelinek et al., 1977).
    """
    from karma_probe.capture.probes import general_passages

    model = inputs.model
    value = perplexity(model.backbone, model.tokenizer, general_passages())
    return Measurement(value, (Record("lm_ppl", value, set="text"),))


@register("fact_acc", higher_is_better=True, needs=("model",))
def fact_acc(inputs) -> Measurement:
    """Cloze-fact accuracy: share of facts (resources/facts.json, 66 prompts such as
    "The capital of France is" → "Paris") whose greedy 8-token continuation contains the answer
    as a whole word on its first line (:func:`fact_correct`).

    Range [0, 1]; an untouched SmolLM2-135M-Instruct gets ~0.7 (resources/smollm2_reference.json).
    Higher = the backbone's knowledge survived fine-tuning. Reference: LAMA cloze probing
    (Petroni et al., "Language Models as Knowledge Bases?", EMNLP 2019).
    """
    model = inputs.model
    facts = load_facts()
    outs = greedy_continuations(model.backbone, model.tokenizer, [p for p, _ in facts])
    value = sum(fact_correct(o, a) for o, (_, a) in zip(outs, facts)) / len(facts)
    return Measurement(value, (Record("fact_acc", value, set="facts"),))
