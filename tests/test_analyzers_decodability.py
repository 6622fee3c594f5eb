"""Decodability pieces on known answers: title matching, token accuracy, the genre probe, and the
post-hoc soft-prompt decoder (learns, leaves the backbone frozen, same seed → same result)."""

import numpy as np
import pytest
import torch

from karma_probe.analyzers.catalogue import normalize_title
from karma_probe.analyzers.decodability import genre_matrix, genre_probe_f1, token_accuracy
from karma_probe.analyzers.softprompt import DecoderBudget, SoftPromptDecoder
from karma_probe.data.dataset import Item


@pytest.mark.parametrize("text, want", [
    ("Toy Story (1995) | Animation, Children's, Comedy", "toy story"),
    (" toy story", "toy story"),
    ("Toy Story (1995)", "toy story"),
    ("Star Wars: Episode IV (1977) | Sci-Fi", "star wars episode iv"),
    ("Twelve Monkeys|Drama", "twelve monkeys"),
    ("1984 (1984)", "1984"),  # only a trailing year goes
])
def test_normalize_title(text, want):
    assert normalize_title(text) == want


def test_normalize_title_drops_the_items_own_year_however_spelled():
    assert normalize_title("unkonwn (unkonwn) | unknown", "unkonwn") == "unkonwn"
    assert normalize_title("Heat (1995)", "1996") == "heat"  # a wrong year is not part of the title


@pytest.mark.parametrize("truth, decoded, want", [
    ("Toy Story (1995) | Animation, Children's", " toy story", True),
    ("Toy Story (1995) | Animation", "Toy-Story (1995)", True),
    ("unkonwn (unkonwn) | unknown", "Unkonwn", True),  # the item's own year, read from the truth
    ("Heat (1995) | Action", "Heat 2 (1995) | Action", False),
    ("Heat (1995) | Action", "", False),
])
def test_exact_is_one_rule_for_samples_and_recon_exact(truth, decoded, want):
    """catalogue.exact: what recon_exact counts and what the report and the dashboard mark "exact"."""
    from karma_probe.analyzers.catalogue import exact

    assert exact(truth, decoded) is want
    assert exact(truth, decoded) == (normalize_title(decoded, "unkonwn" if "unkonwn" in truth else "")
                                     == normalize_title(truth, "unkonwn" if "unkonwn" in truth else ""))


def test_a_perfect_decoder_is_exact_on_every_movielens_item():
    """Decoding exactly the training target (target_text) must count as the true title."""
    from karma_probe.data.dataset import load_dataset
    from karma_probe.data.prompts import readable_title, target_text

    for it in load_dataset("ml-100k").items:
        assert normalize_title(target_text(it), it.year) == normalize_title(readable_title(it.title)), it


def test_token_accuracy_ignores_padding():
    logits = torch.zeros(2, 3, 5)
    logits[0, 0, 1] = logits[0, 1, 2] = logits[0, 2, 4] = 1.0  # predicts 1, 2, 4
    logits[1, 0, 3] = 1.0  # predicts 3, then 0, 0
    labels = torch.tensor([[1, 2, 3], [3, -100, -100]])
    assert token_accuracy(logits, labels) == (3, 4)


def test_genre_matrix():
    items = (Item("a", "A", genres=("Drama",)), Item("b", "B", genres=("Comedy", "Drama")), Item("c", "C"))
    Y = genre_matrix([1, 0, 2, 1], items, ["Comedy", "Drama"])
    assert Y.tolist() == [[1, 1], [0, 1], [0, 0], [1, 1]]


def _genre_data(rng, n, G=4):
    Y = (rng.random((n, G)) < 0.35).astype(int)
    Y[Y.sum(1) == 0, rng.integers(0, G)] = 1
    return Y


def test_genre_probe_reads_linear_genre_codes_and_not_noise():
    rng = np.random.default_rng(0)
    Yf, Yt = _genre_data(rng, 120), _genre_data(rng, 60)
    mix = rng.normal(size=(4, 16))
    code = lambda Y: (2 * Y - 1) @ mix + 0.05 * rng.normal(size=(len(Y), 16))  # noqa: E731  genres linearly encoded
    assert genre_probe_f1(code(Yf), Yf, code(Yt), Yt) == 1.0
    noise = genre_probe_f1(rng.normal(size=(120, 16)), Yf, rng.normal(size=(60, 16)), Yt)
    assert noise < 0.75
    # a genre that never occurs in the test split is not averaged in (its F1 is undefined)
    Yt2 = Yt.copy()
    Yt2[:, 3] = 0
    assert genre_probe_f1(code(Yf), Yf, code(Yt2), Yt2) == 1.0


@pytest.fixture(scope="module")
def tiny():
    """The tiny backbone with a wider init: at the default 0.02 its logits span ~1 nat over 49k
    tokens, so no soft prompt could make any token likely and "the decoder learns" is untestable."""
    from karma_probe.model.backbones import load_backbone

    return load_backbone("tiny", seed=0, initializer_range=0.3)


TEXTS = [" Toy Story (1995) | Animation", " Heat (1995) | Action", " Fargo (1996) | Crime", " Jaws (1975) | Horror"]


def test_soft_prompt_decoder_learns_while_the_backbone_stays_frozen(tiny):
    model, tok = tiny
    E = np.eye(4, dtype=np.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    budget = DecoderBudget(steps=40, batch_size=4, lr=3e-2, max_tokens=8)
    untrained = SoftPromptDecoder(model, tok, DecoderBudget(steps=0, max_tokens=8)).fit(E, TEXTS)
    dec = SoftPromptDecoder(model, tok, budget).fit(E, TEXTS)
    assert dec.losses_[-1] < 0.6 * dec.losses_[0]
    assert dec.token_accuracy(E, TEXTS) > untrained.token_accuracy(E, TEXTS) + 0.2
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # frozen
    assert [p.requires_grad for p in model.parameters()] == flags  # and left as found
    again = SoftPromptDecoder(model, tok, budget).fit(E, TEXTS)
    assert again.losses_ == dec.losses_  # one seed, one result
    decoded = dec.decode(E, max_new_tokens=4)
    assert len(decoded) == 4 and all(isinstance(s, str) for s in decoded)


def test_docstrings_state_the_budgets_in_force():
    """The budgets are part of the metric's definition: its docstring must not drift from them."""
    from karma_probe.analyzers import METRICS
    from karma_probe.analyzers import decodability as D
    from karma_probe.analyzers import softprompt as S
    from karma_probe.analyzers.inputs import FIT_EXAMPLES

    doc = METRICS["probe_decode_acc"].doc
    for phrase in (f"{S.DECODER_STEPS} Adam steps of {S.DECODER_BATCH}", f"lr {S.DECODER_LR:g}", f"seed {S.DECODER_SEED}",
                   f"k = {S.DECODER_PROMPTS}", f"{S.DECODER_MAX_TOKENS} tokens", f"{FIT_EXAMPLES} valid-split"):
        assert phrase in " ".join(doc.split()), phrase
    assert f"{FIT_EXAMPLES} seeded valid-split" in " ".join(METRICS["probe_genre_f1"].doc.split())
    assert f"first {D.RECON_GREEDY} probes" in METRICS["recon_exact"].doc


# --------------------------------------------------------------------------- against the shuffled null


from karma_probe.analyzers import METRICS  # noqa: E402
from karma_probe.analyzers.decodability import derangement  # noqa: E402


@pytest.mark.parametrize("n", [2, 3, 10, 64])
def test_derangement_moves_every_probe_and_is_seeded(n):
    p = derangement(n)
    assert sorted(p.tolist()) == list(range(n)) and not np.any(p == np.arange(n))
    assert np.array_equal(p, derangement(n))
    with pytest.raises(ValueError):
        derangement(1)


class NullInputs:
    """What the decodability analyzers read, with embeddings made to order: a fit split, scored
    probes of the real MovieLens items, and a reader (the tiny backbone)."""

    def __init__(self, X_fit, t_fit, E, targets, reader=None, model=None, cfg=None):
        from karma_probe.data.dataset import load_dataset
        from karma_probe.data.prompts import HISTORY_HEADER, INTEREST_MARKER

        self.fit_split = (np.asarray(X_fit, dtype=np.float32), np.asarray(t_fit))
        self.interest = np.asarray(E, dtype=np.float32)
        self.probe_targets = np.asarray(targets)
        self.dataset = load_dataset("ml-100k")
        self.probe_texts = [f"{HISTORY_HEADER}Heat (1995){INTEREST_MARKER}"] * len(targets)
        self.progress, self.shared, self.meta = False, {}, {"condition": "karma"}
        self.cfg = cfg or type("Cfg", (), {"model": "tiny", "max_target_tokens": 8})()
        self.model = model
        self.reader = type("Reader", (), {"get": staticmethod(lambda spec: reader)})()


def _gain(name, inputs):
    meas = METRICS[f"{name}_gain"](inputs)
    real, shuffled = METRICS[name](inputs).value, METRICS[f"{name}_shuffled"](inputs).value
    assert meas.value == pytest.approx(real - shuffled)
    return meas.value, meas.interval.as_list()


def _genre_code(rng, targets, dataset, dim=16):
    from karma_probe.analyzers.decodability import genre_matrix

    Y = genre_matrix(targets, dataset.items, list(dataset.genres))
    mix = np.random.default_rng(99).normal(size=(Y.shape[1], dim))
    return (2 * Y - 1) @ mix + 0.3 * rng.normal(size=(len(Y), dim))


def test_genre_probe_gain_is_clearly_positive_when_embeddings_carry_the_genres():
    rng = np.random.default_rng(0)
    ds = NullInputs([[0]], [0], [[0]], [0]).dataset
    t_fit, t_test = rng.integers(0, len(ds.items), 300), rng.integers(0, len(ds.items), 120)
    inputs = NullInputs(_genre_code(rng, t_fit, ds), t_fit, _genre_code(rng, t_test, ds), t_test)
    gain, (lo, hi) = _gain("probe_genre_f1", inputs)
    assert gain > 0.3 and lo > 0.1


@pytest.mark.parametrize("kind", ["already-shuffled", "constant"])
def test_genre_probe_gain_is_zero_when_embeddings_carry_nothing(kind):
    """The issue's experiment: embeddings that are another user's (or one constant vector) still
    score some F1 (frequent genres), but no more than their shuffle: gain ≈ 0."""
    rng = np.random.default_rng(1)
    ds = NullInputs([[0]], [0], [[0]], [0]).dataset
    t_fit, t_test = rng.integers(0, len(ds.items), 300), rng.integers(0, len(ds.items), 120)
    X_fit, E = _genre_code(rng, t_fit, ds), _genre_code(rng, t_test, ds)
    if kind == "constant":
        X_fit, E = np.ones_like(X_fit) + 0.3 * rng.normal(size=X_fit.shape), np.ones_like(E)
    else:
        E = E[rng.permutation(len(E))]  # each probe holds a random other probe's embedding
    gain, (lo, hi) = _gain("probe_genre_f1", NullInputs(X_fit, t_fit, E, t_test))
    if kind == "constant":
        assert gain == 0.0 and lo == hi == 0.0
    else:
        assert abs(gain) < 0.06 and lo < 0 < hi


@pytest.fixture(scope="module")
def wide_tiny():
    from karma_probe.model.backbones import load_backbone

    return load_backbone("tiny", seed=0, initializer_range=0.3)


@pytest.fixture
def short_budget(monkeypatch):
    """A budget the tiny backbone learns in (see test_soft_prompt_decoder_learns...)."""
    from karma_probe.analyzers import decodability

    monkeypatch.setattr(decodability, "BUDGET", DecoderBudget(steps=60, batch_size=8, lr=3e-2, max_tokens=8))


def _four_items(rng, n):
    items = np.array([0, 49, 99, 180])  # four different MovieLens titles
    which = rng.integers(0, 4, n)
    return items[which], np.eye(4, dtype=np.float32)[which] + 0.05 * rng.normal(size=(n, 4)).astype(np.float32)


def test_post_hoc_decoder_gain_is_positive_when_embeddings_name_the_item(wide_tiny, short_budget):
    rng = np.random.default_rng(2)
    t_fit, X_fit = _four_items(rng, 64)
    t_test, E = _four_items(rng, 32)
    gain, (lo, hi) = _gain("probe_decode_acc", NullInputs(X_fit, t_fit, E, t_test, reader=wide_tiny))
    assert gain > 0.15 and lo > 0.05


@pytest.mark.parametrize("kind", ["already-shuffled", "constant"])
def test_post_hoc_decoder_gain_is_zero_when_embeddings_carry_nothing(wide_tiny, short_budget, kind):
    rng = np.random.default_rng(3)
    t_fit, X_fit = _four_items(rng, 64)
    t_test, E = _four_items(rng, 32)
    if kind == "constant":
        X_fit, E = np.ones_like(X_fit), np.ones_like(E)
    else:  # embeddings of random other examples, at fit and at scoring: nothing to learn or read
        X_fit, E = X_fit[rng.permutation(64)], E[rng.permutation(32)]
    gain, (lo, hi) = _gain("probe_decode_acc", NullInputs(X_fit, t_fit, E, t_test, reader=wide_tiny))
    if kind == "constant":
        assert gain == 0.0 and lo == hi == 0.0
    else:
        assert abs(gain) < 0.08 and lo <= 0 <= hi


def test_reconstruction_gain_is_exactly_zero_for_a_constant_embedding():
    from karma_probe.core.config import make_config
    from karma_probe.model.retriever import build_model

    cfg = make_config("tiny", "karma")
    model = build_model(cfg, dataset=NullInputs([[0]], [0], [[0]], [0]).dataset)
    model.eval()
    E = np.tile(np.eye(cfg.embed_dim, dtype=np.float32)[:1], (12, 1))
    inputs = NullInputs([[0]], [0], E, np.arange(12) * 7, model=model, cfg=cfg)
    assert _gain("recon_token_acc", inputs)[0] == 0.0
    assert _gain("recon_exact", inputs)[0] == 0.0


def test_macro_f1_equals_sklearns():
    from sklearn.metrics import f1_score

    from karma_probe.analyzers.decodability import macro_f1

    rng = np.random.default_rng(7)
    for _ in range(20):
        Y, P = _genre_data(rng, 30, G=6), (rng.random((30, 6)) < 0.3).astype(int)
        Y[:, 5] = 0  # a genre absent from the targets is not averaged in
        present = np.flatnonzero(Y.sum(0) > 0)
        assert macro_f1(Y, P) == pytest.approx(f1_score(Y, P, labels=present, average="macro", zero_division=0))
