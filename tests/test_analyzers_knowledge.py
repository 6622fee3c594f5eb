"""Knowledge metrics: the fact-scoring rule, the fact file, batched greedy = one at a time,
perplexity's known answer, and the untouched SmolLM2's recorded reference scores."""

import json
import math
from importlib import resources

import numpy as np
import pytest
import torch

from karma_probe.analyzers.knowledge import fact_correct, greedy_continuations, load_facts, perplexity


@pytest.mark.parametrize("continuation, answer, ok", [
    (" Paris.\n\nThe answer is", "Paris", True),
    (" the city of paris, on the Seine", "Paris", True),
    (" Parisian food", "Paris", False),  # whole word only
    (" Lyon.\nParis is larger", "Paris", False),  # first line only
    (" Buenos Aires.", "Buenos Aires", True),
    (" Leonardo da Vinci.", "Leonardo", True),
    (" Romeo", "Rome", False),
    (" 32 degrees Fahrenheit", "32", True),
    (" 320 degrees", "32", False),
    ("", "Paris", False),
])
def test_fact_correct(continuation, answer, ok):
    assert fact_correct(continuation, answer) is ok


def test_fact_file():
    facts = load_facts()
    assert len(facts) >= 40
    assert len({p for p, _ in facts}) == len(facts)
    assert all(p.strip() == p and a.strip() == a and a for p, a in facts)
    raw = json.loads(resources.files("karma_probe").joinpath("resources/facts.json").read_text())
    assert all(set(f) == {"prompt", "answer"} for f in raw)


@pytest.fixture(scope="module")
def tiny():
    from karma_probe.models import load_backbone

    return load_backbone("tiny", seed=0)


def test_batched_greedy_equals_one_at_a_time(tiny):
    """Left padding must not change a prompt's continuation (and the tokenizer keeps right padding)."""
    model, tok = tiny
    prompts = [p for p, _ in load_facts()[:6]] + ["Hi"]
    batched = greedy_continuations(model, tok, prompts, max_new_tokens=5, batch_size=7)
    single = [greedy_continuations(model, tok, [p], max_new_tokens=5)[0] for p in prompts]
    assert batched == single
    assert tok.padding_side == "right"


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny):
    model, tok = tiny
    texts = ["The Moon orbits the Earth.", "Water boils at 100 degrees Celsius at sea level."]
    assert perplexity(model, tok, texts) < 1e6
    with torch.no_grad():
        saved = model.lm_head.weight.clone()
        model.lm_head.weight.zero_()  # every logit 0 → p = 1/V for every token
        # The per-token NLL is float32: ln V up to a few float32 steps at ln V (~1e-6 at V = 4096).
        step = float(np.spacing(np.float32(math.log(model.config.vocab_size))))
        try:
            for batch_size in (1, 2):
                ppl = perplexity(model, tok, texts, batch_size=batch_size)
                assert abs(math.log(ppl) - math.log(model.config.vocab_size)) <= 4 * step, (batch_size, ppl)
        finally:
            model.lm_head.weight.copy_(saved)


def test_perplexity_pools_tokens_not_passages(tiny):
    model, tok = tiny
    a, b = "A short one.", "A much longer passage about rivers, mountains and the sea, with many more tokens in it."
    na, nb = (len(tok(t, add_special_tokens=False)["input_ids"]) - 1 for t in (a, b))
    pa, pb = perplexity(model, tok, [a]), perplexity(model, tok, [b])
    both = perplexity(model, tok, [a, b])
    assert both == pytest.approx(math.exp((na * math.log(pa) + nb * math.log(pb)) / (na + nb)), rel=1e-5)


@pytest.mark.smollm2
def test_untouched_smollm2_matches_its_recorded_reference():
    """fact_acc and lm_ppl of the untouched SmolLM2-135M-Instruct stay at the recorded values.

    A drift means the facts, passages, scoring or the model conversion changed: re-measure with
    the command in smollm2_reference.json and say why in the commit.
    """
    from karma_probe.analyzers.knowledge import FACT_NEW_TOKENS
    from karma_probe.capture.probes import general_passages
    from karma_probe.models import load_backbone

    ref = json.loads(resources.files("karma_probe").joinpath("resources/smollm2_reference.json").read_text())
    model, tok = load_backbone("smollm2-135m")
    facts = load_facts()
    outs = greedy_continuations(model, tok, [p for p, _ in facts], max_new_tokens=FACT_NEW_TOKENS)
    fact_acc = sum(fact_correct(o, a) for o, (_, a) in zip(outs, facts)) / len(facts)
    lm_ppl = perplexity(model, tok, general_passages())
    tol = ref["tolerance"]
    assert ref["n_facts"] == len(facts) and ref["n_passages"] == len(general_passages()), "facts or passages changed"
    assert abs(fact_acc - ref["fact_acc"]) <= tol["fact_acc"], (fact_acc, ref)
    assert abs(lm_ppl - ref["lm_ppl"]) <= tol["lm_ppl_rel"] * ref["lm_ppl"], (lm_ppl, ref)
