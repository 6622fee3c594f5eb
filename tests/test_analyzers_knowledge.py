"""Knowledge metrics: the fact-scoring rule, the fact file, batched greedy = one at a time,
perplexity's known answer, the bootstrap intervals over facts and passages, and the untouched
SmolLM2's recorded reference scores."""

import json
import math
from importlib import resources
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from karma_probe.analyzers import bootstrap, knowledge
from karma_probe.analyzers.knowledge import (fact_correct, greedy_continuations, load_facts, passage_nll, perplexity,
                                             perplexity_interval)
from karma_probe.capture.probes import general_passages


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
    assert len(facts) >= 300  # per-run standard error of fact_acc <= 0.029 (issue 26)
    assert len({p for p, _ in facts}) == len(facts)
    assert all(p.strip() == p and a.strip() == a and a for p, a in facts)
    raw = json.loads(resources.files("karma_probe").joinpath("resources/facts.json").read_text())
    assert all(set(f) == {"prompt", "answer"} for f in raw)
    # the analyzers' docs (analyze --list) quote the set sizes: they must follow the files
    assert f"{len(facts)} prompts" in knowledge.fact_acc.__doc__
    assert f"all {len(general_passages())} of resources/passages.txt" in knowledge.lm_ppl.__doc__
    assert f"the {len(facts)} cloze facts" in knowledge.__doc__ and f"{len(general_passages())} passages" in knowledge.__doc__


@pytest.fixture(scope="module")
def tiny():
    from karma_probe.model.backbones import load_backbone

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


def test_passage_nll_is_per_passage_and_batch_independent(tiny):
    model, tok = tiny
    texts = ["A short one.", "x", "A much longer passage about rivers, mountains and the sea, with many more tokens."]
    nll, count = passage_nll(model, tok, texts, batch_size=2)
    alone = [passage_nll(model, tok, [t]) for t in texts]
    assert count.tolist() == [len(tok(t, add_special_tokens=False)["input_ids"]) - 1 if t != "x" else 0 for t in texts]
    assert nll[1] == 0 and count[1] == 0  # one token: nothing to predict
    np.testing.assert_allclose(nll, [n[0][0] for n in alone], rtol=1e-5)
    assert perplexity(model, tok, texts) == pytest.approx(math.exp(nll.sum() / count.sum()))


# --------------------------------------------------------------------------- intervals over facts and passages


def _inputs(backbone=None, tokenizer=None):
    return SimpleNamespace(model=SimpleNamespace(backbone=backbone, tokenizer=tokenizer))


def test_fact_acc_of_a_model_that_knows_every_other_fact(monkeypatch):
    """Known answer: a fake model that answers exactly the even-numbered facts scores 0.5, and its
    bootstrap interval over facts contains 0.5 with the binomial width (±1.96·√(0.25/n))."""
    facts = load_facts()
    n = len(facts) - len(facts) % 2  # an even number of facts, so exactly half is possible
    monkeypatch.setattr(knowledge, "load_facts", lambda: facts[:n])
    monkeypatch.setattr(knowledge, "greedy_continuations",
                        lambda model, tok, prompts: [f" {a}." if i % 2 == 0 else "" for i, (_, a) in enumerate(facts[:n])])
    meas = knowledge.fact_acc(_inputs())
    assert meas.value == 0.5 and meas.records[0].value == 0.5
    lo, hi = meas.interval.as_list()
    half = 1.96 * math.sqrt(0.25 / n)
    assert lo < 0.5 < hi and hi - 0.5 == pytest.approx(half, rel=0.2) and 0.5 - lo == pytest.approx(half, rel=0.2)
    # seeded: the same interval again, and the replicates are the shared resample of n items (paired across runs)
    again = knowledge.fact_acc(_inputs())
    assert again.interval.as_list() == [lo, hi]
    np.testing.assert_array_equal(again.interval.replicates, meas.interval.replicates)
    hits = np.arange(n) % 2 == 0
    np.testing.assert_array_equal(meas.interval.replicates, hits[bootstrap.indices(n)].mean(1))


def test_fact_acc_of_a_model_that_knows_everything_or_nothing(monkeypatch):
    facts = load_facts()
    for answer, expected in ((lambda a: f" {a}", 1.0), (lambda a: " I do not know", 0.0)):
        monkeypatch.setattr(knowledge, "greedy_continuations", lambda m, t, prompts: [answer(a) for _, a in facts])
        meas = knowledge.fact_acc(_inputs())
        assert meas.value == expected and meas.interval.as_list() == [expected, expected]


def test_perplexity_interval_known_answers():
    count = np.array([10.0, 20.0, 30.0, 40.0])
    same = perplexity_interval(count * 2.0, count)  # every token's NLL is 2: every resample gives e^2
    assert same.as_list() == pytest.approx([math.exp(2.0), math.exp(2.0)])
    nll = np.array([1.0, 2.0, 3.0, 4.0]) * count  # passages of different per-token NLL
    iv = perplexity_interval(nll, count)
    pooled = math.exp(nll.sum() / count.sum())
    assert math.exp(1.0) <= iv.low < pooled < iv.high <= math.exp(4.0)
    idx = bootstrap.indices(len(count))  # replicate b: the pooled perplexity of resample b
    np.testing.assert_allclose(iv.replicates, np.exp(nll[idx].sum(1) / count[idx].sum(1)))
    assert perplexity_interval(nll, count).as_list() == iv.as_list()  # seeded


def test_lm_ppl_interval_over_all_passages(tiny):
    """lm_ppl reads every passage (not just the capture's text probes) and its interval brackets it;
    a uniform model (LM head zeroed) has perplexity V on every resample: a zero-width interval at V."""
    model, tok = tiny
    inputs = _inputs(model, tok)
    meas = knowledge.lm_ppl(inputs)
    assert meas.value == pytest.approx(perplexity(model, tok, general_passages()), rel=1e-9)
    assert meas.interval.low < meas.value < meas.interval.high and len(meas.interval.replicates) == bootstrap.RESAMPLES
    with torch.no_grad():
        saved = model.lm_head.weight.clone()
        model.lm_head.weight.zero_()
        try:
            uniform = knowledge.lm_ppl(inputs)
        finally:
            model.lm_head.weight.copy_(saved)
    V = model.config.vocab_size
    assert uniform.value == pytest.approx(V, rel=1e-5) and uniform.interval.as_list() == pytest.approx([V, V], rel=1e-5)


@pytest.mark.smollm2
def test_untouched_smollm2_matches_its_recorded_reference():
    """fact_acc and lm_ppl of the untouched SmolLM2-135M-Instruct, and their intervals, stay at the
    recorded values.

    A drift means the facts, passages, scoring or the model conversion changed: re-measure with
    the command in smollm2_reference.json and say why in the commit.
    """
    from karma_probe.model.backbones import load_backbone

    ref = json.loads(resources.files("karma_probe").joinpath("resources/smollm2_reference.json").read_text())
    model, tok = load_backbone("smollm2-135m")
    s = knowledge.scores(model, tok)
    tol = ref["tolerance"]
    assert ref["n_facts"] == len(load_facts()) and ref["n_passages"] == len(general_passages()), "facts or passages changed"
    for key in ("fact_acc", "fact_acc_ci"):
        assert np.allclose(s[key], ref[key], rtol=0, atol=tol["fact_acc"]), (key, s[key], ref[key])
    for key in ("lm_ppl", "lm_ppl_ci"):
        assert np.allclose(s[key], ref[key], rtol=tol["lm_ppl_rel"], atol=0), (key, s[key], ref[key])


def _reference_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "knowledge_reference.py"
    spec = importlib.util.spec_from_file_location("knowledge_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_script_writes_what_the_analyzers_measure(tmp_path, tiny, capsys):
    """scripts/knowledge_reference.py on the tiny backbone: the file holds the analyzers' numbers,
    intervals and the command; bad input is one line on stderr, exit 2, nothing written."""
    script = _reference_script()
    out = tmp_path / "ref.json"
    assert script.main(["--model", "tiny", "--out", str(out)]) == 0
    ref = json.loads(out.read_text())
    model, tok = tiny
    inputs = _inputs(model, tok)
    fact, ppl = knowledge.fact_acc(inputs), knowledge.lm_ppl(inputs)
    assert ref["n_facts"] == len(load_facts()) and ref["n_passages"] == len(general_passages())
    assert ref["fact_acc"] == fact.value and ref["fact_acc_ci"] == fact.interval.as_list()
    assert ref["lm_ppl"] == pytest.approx(ppl.value, rel=1e-9) and ref["lm_ppl_ci"] == pytest.approx(ppl.interval.as_list(), rel=1e-9)
    parts = list(ref["fact_acc_by_part"].values())
    assert [p["n_facts"] for p in parts] == [66, len(load_facts()) - 66]
    assert sum(p["fact_hits"] for p in parts) == ref["fact_hits"]
    assert [p["n_passages"] for p in ref["lm_ppl_by_part"].values()] == [32, len(general_passages()) - 32]
    assert ref["command"].endswith(f"knowledge_reference.py --model tiny --out {out}")
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    assert script.main(["--model", "tiny", "--threads", "0", "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads" in err and not bad.exists()
