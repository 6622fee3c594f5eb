"""Attention metrics: known answers on hand-made maps, streamed sums = full maps, the capture agrees."""

import math

import numpy as np
import pytest

from karma_probe.analyzers.attention import (SINK_EPSILON, attention_sums, attn_entropy_from_pattern,
                                             key_concentration_from_pattern, massive_ratio, sink_mass_from_pattern,
                                             top_count)
from karma_probe.analyzers.registry import METRICS


def uniform_causal(T: int) -> np.ndarray:
    return np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]


def all_on_first(T: int) -> np.ndarray:
    P = np.zeros((T, T))
    P[:, 0] = 1.0
    return P


def random_causal(rng, L: int, H: int, T: int, temperature: float = 1.0) -> np.ndarray:
    s = rng.normal(size=(L, H, T, T)) / temperature
    s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def harmonic(n: int) -> float:
    return sum(1.0 / k for k in range(1, n + 1))


class FakeInputs:
    """Just what the attention analyzers read: per-set stats."""

    headline_set = "history"

    def __init__(self, sets: dict[str, dict[str, np.ndarray]], train_layers: int = 0):
        self.sets = sets
        self.meta = {"train": {"train_layers": train_layers}}

    def attention_sets(self):
        return list(self.sets.items())

    def residual_sets(self):
        return [(n, s) for n, s in self.sets.items() if "resid.massive_sum" in s]


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("T", [2, 7, 40])
def test_all_attention_on_first_token(T):
    P = all_on_first(T)
    assert sink_mass_from_pattern(P) == 1.0
    assert attn_entropy_from_pattern(P) == 0.0
    assert key_concentration_from_pattern(P) == 0.0  # nothing left to concentrate (defined as 0)


@pytest.mark.parametrize("T", [2, 5, 21, 22, 64])
def test_uniform_causal_attention_closed_form(T):
    P = uniform_causal(T)
    # sink: mean_{i=1..T-1} 1/(i+1) = (H_T - 1) / (T - 1)
    assert sink_mass_from_pattern(P) == pytest.approx((harmonic(T) - 1) / (T - 1), rel=1e-12)
    # each row i is uniform over its i+1 keys: normalized entropy exactly 1
    assert attn_entropy_from_pattern(P) == pytest.approx(1.0, rel=1e-12)
    # r_j = sum_{i=j}^{T-1} 1/(i+1) = H_T - H_j, decreasing in j: the top k are j = 1..k;
    # sum_{j>=1} r_j = (T - 1) - (H_T - 1) = T - H_T
    k = math.ceil(0.05 * (T - 1))
    top = sum(harmonic(T) - harmonic(j) for j in range(1, k + 1))
    assert key_concentration_from_pattern(P) == pytest.approx(top / (T - harmonic(T)), rel=1e-12)


def test_self_attention_and_one_barcode_column():
    T = 15
    eye = np.eye(T)
    assert sink_mass_from_pattern(eye) == 0.0
    assert attn_entropy_from_pattern(eye) == 0.0
    # every key j >= 1 receives exactly 1: the top k of T-1 equal shares
    assert key_concentration_from_pattern(eye) == pytest.approx(top_count(T - 1) / (T - 1))
    # queries i >= c all read key c ("barcode"); earlier ones read themselves
    c = 4
    P = np.eye(T)
    P[c:, :] = 0.0
    P[c:, c] = 1.0
    assert key_concentration_from_pattern(P) == pytest.approx((T - c) / (T - 1))  # k = 1 for T - 1 = 14


def test_top_count_is_ceiling_of_five_percent():
    assert [top_count(n) for n in (1, 19, 20, 21, 40, 41, 100, 101)] == [1, 1, 1, 2, 2, 3, 5, 6]


def test_massive_ratio():
    h = np.ones((3, 8))
    h[1, 5] = -120.0
    assert massive_ratio(h) == 120.0
    # an even count takes the lower middle value, as torch.median does: |h| = 1,2,3,4 → 4 / 2
    assert massive_ratio(np.array([[1.0, -2.0], [3.0, 4.0]])) == 2.0


# --------------------------------------------------------------------------- analyzers on sums


def test_analyzers_reduce_sums_to_the_full_map_values():
    rng = np.random.default_rng(0)
    L, H = 3, 2
    maps = [random_causal(rng, L, H, T, temperature=0.5) for T in (6, 11, 9)]
    resid = [rng.normal(size=(L + 1, m.shape[-1], 5)) for m in maps]
    stats = attention_sums(maps, resid)
    inputs = FakeInputs({"history": stats})
    rows = np.array([m.shape[-1] - 1 for m in maps], dtype=float)

    # the headline averages probes (each probe weighs the same); the pooled record pools rows
    want_sink = np.mean([sink_mass_from_pattern(m) for m in maps], axis=0)
    want_ent = np.mean([attn_entropy_from_pattern(m) for m in maps], axis=0)
    want_conc = np.mean([key_concentration_from_pattern(m) for m in maps], axis=0)
    pooled_sink = sum(sink_mass_from_pattern(m) * r for m, r in zip(maps, rows)) / rows.sum()
    pooled_ent = sum(attn_entropy_from_pattern(m) * r for m, r in zip(maps, rows)) / rows.sum()
    for name, pooled in (("sink_mass", pooled_sink), ("attn_entropy", pooled_ent)):
        rec = [r.value for r in METRICS[name](inputs).records if r.set == "history_pooled"]
        assert rec == [pytest.approx(float(pooled.mean()), rel=1e-5)], name
    for name, want in (("sink_mass", want_sink), ("attn_entropy", want_ent), ("key_concentration", want_conc)):
        meas = METRICS[name](inputs)
        got = np.full((L, H), np.nan)
        for r in meas.records:
            if r.head is not None:
                got[r.layer, r.head] = r.value
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=name)
        assert meas.value == pytest.approx(float(want.mean()), rel=1e-5)

    ratios = np.array([[massive_ratio(h[m]) for m in range(L + 1)] for h in resid])
    meas = METRICS["massive_act"](inputs)
    per_layer = {r.layer: r.value for r in meas.records if r.layer is not None}
    np.testing.assert_allclose([per_layer[m] for m in range(L + 1)], ratios.mean(0), rtol=1e-5)
    assert meas.value == pytest.approx(ratios.mean(0).max(), rel=1e-5)


def test_sink_rate_counts_heads_above_epsilon():
    assert SINK_EPSILON == 0.3
    sink = np.array([[0.9, 0.1, 0.29], [0.31, 0.0, 0.5]])  # 3 of 6 heads above 0.3
    stats = {"attn.first_mass": np.stack([sink - 0.01, sink + 0.01]).astype(np.float32)}  # two probes, mean = sink
    meas = METRICS["sink_rate"](FakeInputs({"history": stats, "text": {"attn.first_mass": np.zeros((1, 2, 3), np.float32)}}))
    assert meas.value == pytest.approx(0.5)
    per_layer = {r.layer: r.value for r in meas.records if r.layer is not None}
    assert per_layer == pytest.approx({0: 1 / 3, 1: 2 / 3})
    assert [r.value for r in meas.records if r.set == "text"] == [0.0]


def test_single_probe_sink_mass_is_one_when_all_on_first_token():
    stats = attention_sums([np.broadcast_to(all_on_first(9), (2, 3, 9, 9))])
    meas = METRICS["sink_mass"](FakeInputs({"history": stats}))
    assert meas.value == 1.0
    assert METRICS["sink_rate"](FakeInputs({"history": stats})).value == 1.0
    assert METRICS["attn_entropy"](FakeInputs({"history": stats})).value == 0.0


def test_trained_layer_and_passage_metrics_read_only_their_part():
    """``*_trained`` average the top train_layers layers of the history probes (every layer when 0);
    ``*_text`` the general passages over every layer."""
    rng = np.random.default_rng(1)
    L, H = 4, 2
    hist = [random_causal(rng, L, H, T, temperature=0.5) for T in (7, 12)]
    text = [random_causal(rng, L, H, T, temperature=2.0) for T in (9, 5, 8)]
    sets = {"history": attention_sums(hist), "text": attention_sums(text)}
    per_hist = np.stack([sink_mass_from_pattern(m) for m in hist])  # [N, L, H]
    conc = np.stack([key_concentration_from_pattern(m) for m in hist])
    ent = np.stack([attn_entropy_from_pattern(m) for m in hist])
    top2 = FakeInputs(sets, train_layers=2)
    assert METRICS["sink_mass_trained"](top2).value == pytest.approx(float(per_hist[:, 2:].mean()), rel=1e-5)
    assert METRICS["key_concentration_trained"](top2).value == pytest.approx(float(conc[:, 2:].mean()), rel=1e-5)
    assert METRICS["attn_entropy_trained"](top2).value == pytest.approx(float(ent[:, 2:].mean()), rel=1e-5)
    every = FakeInputs(sets, train_layers=0)
    assert METRICS["sink_mass_trained"](every).value == pytest.approx(METRICS["sink_mass"](every).value, rel=1e-6)
    want_text = np.mean([sink_mass_from_pattern(m) for m in text])
    meas = METRICS["sink_mass_text"](top2)
    assert meas.value == pytest.approx(float(want_text), rel=1e-5)
    assert meas.interval is not None and meas.interval.low <= meas.value <= meas.interval.high
    assert METRICS["sink_mass_trained"](top2).value != pytest.approx(METRICS["sink_mass"](top2).value)
    conc_text = np.mean([key_concentration_from_pattern(m) for m in text])
    ent_text = np.mean([attn_entropy_from_pattern(m) for m in text])
    assert METRICS["key_concentration_text"](top2).value == pytest.approx(float(conc_text), rel=1e-5)
    assert METRICS["attn_entropy_text"](top2).value == pytest.approx(float(ent_text), rel=1e-5)
    assert METRICS["attn_entropy_text"](top2).value != pytest.approx(METRICS["attn_entropy"](top2).value)


# --------------------------------------------------------------------------- the capture agrees


def test_capture_reducers_equal_full_map_definitions():
    """The capture's streamed, chunked reducers give what attention_sums computes from whole maps."""
    torch = pytest.importorskip("torch")
    from karma_probe.capture.reducers import AttentionReducer

    rng = np.random.default_rng(1)
    L, H, lengths = 2, 3, [12, 5, 9]
    T = max(lengths)
    maps = [random_causal(rng, L, H, n, temperature=0.3) for n in lengths]
    red = AttentionReducer(L, H, T)
    red.begin_batch(torch.tensor(lengths))
    for layer in range(L):
        padded = np.zeros((len(lengths), H, T, T))
        for b, m in enumerate(maps):
            n = m.shape[-1]
            padded[b, :, :n, :n] = m[layer]
            padded[b, :, n:, 0] = 1.0  # padding rows: anything normalized; the reducer must drop them
        for start in range(0, T, 4):  # odd chunking on purpose
            end = min(start + 4, T)
            red.add_rows(layer, torch.tensor(padded[:, :, start:end, :end]), start)
    red.end_batch()
    got = {k: v.numpy() for k, v in red.state().items()}
    want = attention_sums(maps)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)


# --------------------------------------------------------------------------- probe-mean vs pooled rows


def test_probe_mean_weighs_every_probe_the_same_pooled_rows_do_not():
    """A long probe all on token 0 and a short one that never looks at it: probe-mean 1/2,
    pooled rows (39 + 0) / (39 + 4) — the long probe dominates."""
    long, short = all_on_first(40), np.eye(5)
    stats = attention_sums([np.broadcast_to(long, (1, 1, 40, 40)), np.broadcast_to(short, (1, 1, 5, 5))])
    meas = METRICS["sink_mass"](FakeInputs({"history": stats}))
    assert meas.value == pytest.approx(0.5)
    assert [r.value for r in meas.records if r.set == "history_pooled"] == [pytest.approx(39 / 43)]
    lo, hi = meas.interval.as_list()
    assert lo <= 0.5 <= hi and lo < hi  # two different probes: a real spread


@pytest.mark.parametrize("name", ["sink_mass", "sink_rate", "key_concentration", "attn_entropy", "massive_act"])
def test_identical_probes_give_a_zero_width_interval_around_the_estimate(name):
    rng = np.random.default_rng(3)
    P = random_causal(rng, 2, 3, 12, temperature=0.5)
    h = rng.normal(size=(3, 12, 4))
    stats = attention_sums([P] * 7, [h] * 7)
    meas = METRICS[name](FakeInputs({"history": stats}))
    lo, hi = meas.interval.as_list()
    assert lo == pytest.approx(meas.value, abs=1e-6) and hi == pytest.approx(meas.value, abs=1e-6)


@pytest.mark.parametrize("name", ["sink_mass", "key_concentration", "attn_entropy", "massive_act"])
def test_interval_contains_the_estimate_on_varied_probes(name):
    rng = np.random.default_rng(5)
    maps = [random_causal(rng, 2, 3, T, temperature=t) for T, t in zip(rng.integers(6, 30, 24), rng.uniform(0.2, 2, 24))]
    resid = [rng.normal(size=(3, m.shape[-1], 4)) * rng.uniform(1, 3) for m in maps]
    meas = METRICS[name](FakeInputs({"history": attention_sums(maps, resid)}))
    lo, hi = meas.interval.as_list()
    assert lo < meas.value < hi


def test_a_capture_without_per_probe_statistics_has_no_probe_mean():
    from karma_probe.analyzers.registry import Absent

    stats = {k: v for k, v in attention_sums([all_on_first(6)[None, None]]).items() if not k.endswith(
        ("first_mass", "entropy", "key_conc", "probe_rows"))}
    with pytest.raises(Absent, match="re-run `karma-probe capture`"):
        METRICS["sink_mass"](FakeInputs({"history": stats}))


# --------------------------------------------------------------------------- Gu et al.'s sink metric


def test_gu_metric_known_answers():
    """Their code (eval_sink_open_source.py lines 46-49) on hand-made maps: α_0 = (1/T) Σ_i P[i, 0]."""
    from karma_probe.analyzers.attention import gu_importance, gu_sink_rate_from_pattern

    T = 64
    assert gu_importance(all_on_first(T))[0] == 1.0  # every query on token 0
    # uniform causal: α_0 = (1/T) Σ_{i<T} 1/(i+1) = H_T / T — 0.074 at T = 64 (no sink), 0.52 at T = 4 (a sink)
    assert gu_importance(uniform_causal(T))[0] == pytest.approx(harmonic(T) / T)
    assert gu_importance(uniform_causal(4))[0] == pytest.approx(harmonic(4) / 4)
    # importance of key j: the mean over the T - j queries that see it (uniform causal, last key: 1/T)
    assert gu_importance(uniform_causal(T))[-1] == pytest.approx(1 / T)
    # [samples, layers, heads, T, T]: 3 of the 4 (sample, layer, head) have a first-token sink
    maps = np.stack([np.stack([np.stack([all_on_first(T), uniform_causal(T)])]),
                     np.stack([np.stack([all_on_first(T), all_on_first(T)])])])  # (2, 1, 2, T, T)
    assert gu_sink_rate_from_pattern(maps) == 0.75
    assert gu_sink_rate_from_pattern(np.stack([uniform_causal(4)])[None, None]) == 1.0
    # the threshold is per (sample, layer, head), then averaged: two heads of mean importance 0.5
    # count 1/2 if one is 0.9 and one 0.1, where a threshold on the mean would say 1
    P = np.zeros((2, 1, 1, 10, 10))
    P[0, ..., :, 0] = 1.0
    P[1, ..., np.arange(10), np.arange(10)] = 1.0  # every query on itself: α_0 = 1/10
    assert gu_sink_rate_from_pattern(P) == 0.5


def test_gu_importance_from_streamed_first_mass_equals_their_formula():
    from karma_probe.analyzers.attention import gu_first_importance, gu_importance

    rng = np.random.default_rng(3)
    maps = random_causal(rng, 2, 3, 64, temperature=0.3)  # (L, H, T, T)
    first_mass = sink_mass_from_pattern(maps)  # what the capture streams per probe: mean of P[i, 0], i ≥ 1
    np.testing.assert_allclose(gu_first_importance(first_mass, 64), gu_importance(maps)[..., 0], rtol=1e-12)


def test_gu_windows_are_64_tokens_from_each_passage():
    from karma_probe.analyzers.attention import gu_windows
    from karma_probe.capture.probes import general_passages
    from karma_probe.model.backbones import load_tokenizer

    tok = load_tokenizer()
    passages = general_passages()
    windows = gu_windows(tok, passages)
    assert len(windows) == len(passages) and all(len(w) == 64 for w in windows)
    for k in (0, len(passages) - 1):  # each starts with its own passage; the last one wraps round
        own = tok(passages[k])["input_ids"]
        assert windows[k][:len(own)] == own and len(own) < 64


def test_sink_rate_gu_on_the_model_equals_their_code_on_eager_attention():
    """The analyzer (capture library, streamed) against Gu et al.'s formula on the HF model's own
    eager ``output_attentions`` for the same windows, on a tiny model with peaked attention."""
    import types

    import torch

    from karma_probe.analyzers.attention import GU_TOKENS, gu_first_importance, gu_first_mass, gu_importance, gu_windows
    from karma_probe.calibration.interventions import planted_key
    from karma_probe.capture.probes import general_passages
    from karma_probe.model.backbones import load_backbone

    model, tok = load_backbone("tiny", attn_implementation="sdpa")
    eager, _ = load_backbone("tiny", attn_implementation="eager")
    with torch.no_grad():  # sharpen the random attention so some heads pass ε (both copies alike)
        for m in (model, eager):
            for layer in m.model.layers:
                layer.self_attn.q_proj.weight.mul_(12.0)
    windows = gu_windows(tok, general_passages()[:6])
    # token 0's key 40× longer: heads whose queries lean its way sink, the others avoid it
    with planted_key(model, 1.0, position=0, gain=39.0), planted_key(eager, 1.0, position=0, gain=39.0):
        ours = gu_first_importance(gu_first_mass(model, windows), GU_TOKENS)  # (N, L, H)
        with torch.no_grad():
            att = eager(input_ids=torch.tensor(windows), output_attentions=True).attentions  # L × (N, H, T, T)
    theirs = gu_importance(torch.stack(att, 1).double().numpy())[..., 0]  # (N, L, H)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert 0 < (theirs > SINK_EPSILON).mean() < 1  # the comparison covers both sides of ε
    inputs = types.SimpleNamespace(model=types.SimpleNamespace(backbone=model, tokenizer=tok))
    with planted_key(model, 1.0, position=0, gain=39.0):
        meas = METRICS["sink_rate_gu"](inputs)
        full = gu_first_importance(gu_first_mass(model, gu_windows(tok, general_passages())), GU_TOKENS)
    assert meas.value == float((full > SINK_EPSILON).mean())
    assert meas.interval.low <= meas.value <= meas.interval.high
