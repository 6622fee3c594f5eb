"""Is the interest embedding semantically decodable? (the KARMA property)

All of them are scored on the capture's history probes (test split: history → last item), with the
interest embeddings the capture stored (in the run's comparable space, analyzers/space.py):

- ``recon_token_acc`` / ``recon_exact``: through the run's **own** reconstruction path (its
  adapter → soft prompts → its backbone). Only meaningful where L_rec trained it; an untouched
  model has no such path and the metrics are absent.
- ``probe_genre_f1`` / ``probe_decode_acc`` (/ ``probe_decode_acc_own``): fresh read-outs with one
  recipe for every run, fitted on valid-split examples of users that are not scored
  (history → second-last item, RunInputs.fit_split) and scored on the test probes, so an
  action-only run is judged exactly like a KARMA run. ``probe_decode_acc`` trains its decoder on
  one fixed reader (analyzers/reader.py), ``probe_decode_acc_own`` on the run's own backbone.

**Against its own null** (issue 13). A read-out scores well partly without looking at the
embedding at all: item texts share their form ("(19", " | "), popular genres are a good guess.
So every metric M is also computed with each probe's embedding replaced by another probe's,
e_π(i) with π a seeded derangement (``M_shuffled``), and the headline is the difference
``M_gain = M − M_shuffled``. For the fitted read-outs the **fit is kept** and only the scored
embeddings are shuffled: the null asks "does this reader's score depend on *whose* embedding it
reads?" with the reader — its prior, its bias towards frequent genres and text forms — held
fixed. Refitting on shuffled fit pairs would ask a different question (what can be learned from
no pairing at all), and a reader fitted on noise is a weaker one than the reader scored, which
would inflate the gain. Shuffling rows keeps the set of embeddings (their distribution) as is,
so the reader sees in-distribution inputs. Two probes that happen to share a target item keep
a little true signal after shuffling; with 64 users that is rare and biases the gain towards 0.

Every number comes with a 95 % bootstrap interval over the scored probes; real and shuffled are
resampled together (the same probes), so the gain's interval is a paired one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from karma_probe.analyzers import bootstrap
from karma_probe.analyzers.catalogue import exact
from karma_probe.analyzers.registry import Absent, Measurement, register
from karma_probe.rundir.analysis import Record

RECON_BATCH = 16
RECON_GREEDY = 16  # probes decoded greedily for recon_exact (no KV cache; cost: benchmarks/README.md)
SAMPLES = 4  # decoded examples written to analysis.json samples.decoded, per decoder
PROBE_C = 1.0  # logistic-regression inverse regularization, on standardized features
SHUFFLE_SEED = 0  # the derangement π of the null
BUDGET = None  # the post-hoc decoder's budget; None = softprompt.DecoderBudget() (tests shrink it)
NEEDS = ("capture", "model")


def derangement(n: int, seed: int = SHUFFLE_SEED) -> np.ndarray:
    """A seeded permutation π of range(n) with π[i] ≠ i for every i (n ≥ 2): probe i reads the
    embedding of probe π[i], always another user's. Drawn by rejection (≈ e tries on average)."""
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    rng = np.random.default_rng([seed, n])
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


@dataclass(frozen=True)
class Nulled:
    """One decodability metric on the real and on the shuffled embeddings, with paired intervals."""

    real: float
    shuffled: float
    real_iv: bootstrap.Interval
    shuffled_iv: bootstrap.Interval
    samples: tuple[dict, ...] = ()

    @property
    def gain(self) -> float:
        return self.real - self.shuffled

    @property
    def gain_iv(self) -> bootstrap.Interval:
        return self.real_iv - self.shuffled_iv


def _nulled(inputs, name: str, compute) -> Nulled:
    """``compute(inputs)`` once per RunInputs; the metric, its null and its gain all read it."""
    key = ("nulled", name)
    if key not in inputs.shared:
        inputs.shared[key] = compute(inputs)
    return inputs.shared[key]


def _pooled(hits_real, hits_shuf, counts) -> tuple[float, float, bootstrap.Interval, bootstrap.Interval]:
    """Token-pooled accuracies Σhits/Σcounts and their (paired) intervals over probes."""
    total = counts.sum()
    return (float(hits_real.sum() / total), float(hits_shuf.sum() / total),
            bootstrap.of_ratio(hits_real, counts), bootstrap.of_ratio(hits_shuf, counts))


SHUFFLED_DOC = """{metric} on shuffled embeddings: the same metric with probe i reading e_π(i), the
    interest embedding of another probe's user (π a seeded derangement, SHUFFLE_SEED = 0); a
    fitted read-out keeps the fit made on the real fit split, only the scored embeddings move.

    Range as {metric}. It is the level the reader reaches without the user's own embedding (item
    text form, frequent genres, the backbone's prior): a reference level, not a target — read
    {metric}_gain. Declared higher-is-better like {metric} (same scale). Reference: control tasks
    and selectivity, Hewitt & Liang, "Designing and Interpreting Probes with Control Tasks" (EMNLP 2019).
    """

GAIN_DOC = """Decodability gain of {metric}: {metric}(e_i) − {metric}(e_π(i)), real minus shuffled
    embeddings, on the same probes with the same reader (π a seeded derangement).

    Range [−1, 1]; 0 = the score does not depend on whose embedding is read (the embedding carries
    nothing the read-out uses), > 0 = the user's own embedding holds the target. Higher = more
    decodable. The headline of the decodability family (the raw {metric} is kept). 95 % interval:
    paired bootstrap over probes. Reference: selectivity, Hewitt & Liang (EMNLP 2019).
    """


def _register_null(metric: str, compute) -> None:
    """Register ``{metric}_shuffled`` and ``{metric}_gain``, reading ``compute``'s cached result."""

    def shuffled(inputs) -> Measurement:
        r = _nulled(inputs, metric, compute)
        return Measurement(r.shuffled, (Record(f"{metric}_shuffled", r.shuffled, set="history"),),
                           interval=r.shuffled_iv)

    def gain(inputs) -> Measurement:
        r = _nulled(inputs, metric, compute)
        return Measurement(r.gain, (Record(f"{metric}_gain", r.gain, set="history"),), interval=r.gain_iv)

    for kind, fn, doc in (("shuffled", shuffled, SHUFFLED_DOC), ("gain", gain, GAIN_DOC)):
        fn.__doc__ = doc.format(metric=metric)
        fn.__name__ = f"{metric}_{kind}"
        register(f"{metric}_{kind}", higher_is_better=True, needs=NEEDS)(fn)


def _real(metric: str, r: Nulled) -> Measurement:
    return Measurement(r.real, (Record(metric, r.real, set="history"),), r.samples, interval=r.real_iv)


def _need_heads(model) -> None:
    if not model.has_heads:
        raise Absent("no retriever heads (an untouched or your own model as loaded): no reconstruction path")


def _targets(inputs) -> list[str]:
    from karma_probe.data.prompts import target_text

    items = inputs.dataset.items
    return [target_text(items[int(t)]) for t in inputs.probe_targets]


def _history(prompt: str) -> str:
    """The item lines of a history prompt, without the header and the marker."""
    from karma_probe.data.prompts import HISTORY_HEADER, INTEREST_MARKER

    return prompt.removeprefix(HISTORY_HEADER).removesuffix(INTEREST_MARKER).strip()


def token_accuracy(logits, labels) -> tuple[int, int]:
    """(correct, scored) over positions whose label is not −100; logits (..., V), labels (...)."""
    sel = labels != -100
    return int((logits.argmax(-1)[sel] == labels[sel]).sum()), int(sel.sum())


def _recon_hits(model, E, targets) -> tuple[np.ndarray, np.ndarray]:
    """Per probe: (correct target tokens, target tokens) of the run's own path, teacher-forced."""
    import torch

    hits, counts = [], []
    E = torch.as_tensor(np.asarray(E), dtype=torch.float32)
    with torch.no_grad():
        for i in range(0, len(targets), RECON_BATCH):
            batch = targets[i:i + RECON_BATCH]
            ids, mask = model.pad(batch)
            logits, labels = model.reconstruction_logits(E[i:i + RECON_BATCH].to(model.device), ids, mask)
            n = [len(t) for t in batch]  # labels are the real tokens, probe by probe
            hits += [int(r.sum()) for r in (logits.argmax(-1) == labels).split(n)]
            counts += n
    return np.array(hits), np.array(counts)


def _recon_token_acc(inputs) -> Nulled:
    model, cfg = inputs.model, inputs.cfg
    _need_heads(model)
    n, eos = cfg.max_target_tokens, model.tokenizer.eos_token_id
    targets = [t[: n - 1] + [eos] for t in model.tokenize(_targets(inputs))]
    E = np.asarray(inputs.interest)
    real, counts = _recon_hits(model, E, targets)
    shuf, _ = _recon_hits(model, E[derangement(len(E))], targets)
    return Nulled(*_pooled(real, shuf, counts))


@register("recon_token_acc", higher_is_better=True, needs=NEEDS)
def recon_token_acc(inputs) -> Measurement:
    """Teacher-forced token accuracy of the run's own reconstruction path:
    Σ [argmax p(t_i | soft(e), t_<i) = t_i] / Σ 1 over the target text's tokens (cut to
    max_target_tokens, EOS last, exactly as L_rec trains them), e = captured interest embedding.

    Range [0, 1]; higher = the embedding decodes back to the item (KARMA's L_rec succeeded) — or
    that the path predicts item-text form whatever the embedding: compare recon_token_acc_gain.
    Absent for an untouched model. Reference: KARMA (arXiv 2603.22779), embedding-conditioned
    reconstruction.
    """
    return _real("recon_token_acc", _nulled(inputs, "recon_token_acc", _recon_token_acc))


def _recon_exact(inputs) -> Nulled:
    import torch

    from karma_probe.data.prompts import readable_title

    model, cfg = inputs.model, inputs.cfg
    _need_heads(model)
    n = min(RECON_GREEDY, len(inputs.probe_targets))
    E_all = np.asarray(inputs.interest)
    items = inputs.dataset.items
    truth = [items[int(t)] for t in inputs.probe_targets[:n]]

    def hits(E) -> tuple[np.ndarray, list[str]]:
        E = torch.as_tensor(np.asarray(E), dtype=torch.float32)
        decoded = []
        for i in range(0, n, RECON_BATCH):
            decoded += model.reconstruct_greedy(E[i:i + RECON_BATCH], max_new_tokens=cfg.max_target_tokens)
        right = [exact(readable_title(it.title), d, year=it.year) for d, it in zip(decoded, truth)]
        return np.array(right, dtype=np.float64), decoded

    real, decoded = hits(E_all[:n])
    shuf, _ = hits(E_all[derangement(len(E_all))][:n])  # another user's embedding, for the same 16 probes
    texts = _targets(inputs)
    samples = tuple({"history": _history(inputs.probe_texts[i]), "truth": texts[i].strip(), "decoded": decoded[i].strip(),
                     "decoder": "run"} for i in range(min(SAMPLES, n)))
    return Nulled(float(real.mean()), float(shuf.mean()), bootstrap.of_mean(real), bootstrap.of_mean(shuf), samples)


@register("recon_exact", higher_is_better=True, needs=NEEDS)
def recon_exact(inputs) -> Measurement:
    """Exact-title rate of greedy decoding through the run's own reconstruction path:
    mean over the first 16 probes of [normalize_title(decoded) = normalize_title(true title)],
    where normalize_title drops " | genres" and a trailing "(year)", casefolds, and turns
    punctuation into spaces (catalogue.exact: the same rule marks a decoded sample "exact" in the
    report and the dashboard).

    Range [0, 1]; higher = the item can be named from the embedding alone (see recon_exact_gain).
    Absent for an untouched model. Reference: KARMA (arXiv 2603.22779).
    """
    return _real("recon_exact", _nulled(inputs, "recon_exact", _recon_exact))


def genre_matrix(item_indices, items, genres: list[str]) -> np.ndarray:
    """Multi-hot [n, G] of the items' genres."""
    col = {g: j for j, g in enumerate(genres)}
    Y = np.zeros((len(item_indices), len(genres)), dtype=np.int64)
    for r, i in enumerate(item_indices):
        for g in items[int(i)].genres:
            Y[r, col[g]] = 1
    return Y


def genre_probe_f1(X_fit, Y_fit, X_test, Y_test, C: float = PROBE_C) -> float:
    """Macro-F1 on (X_test, Y_test) of a one-vs-rest logistic regression fitted on (X_fit, Y_fit).

    Features are standardized with the fit split's statistics. Macro-F1 is averaged over the
    genres that occur in Y_test (a genre absent from the test targets has no defined recall). A
    genre with a single class in the fit split gets a constant predictor.
    """
    return macro_f1(Y_test, fit_genre_probe(X_fit, Y_fit, C).predict(np.asarray(X_test, dtype=np.float64)))


def macro_f1(Y, pred) -> float:
    """Macro-F1 over the genres present in Y (multi-hot [n, G]): mean over those genres of
    2·TP / (2·TP + FP + FN) — sklearn's f1_score(average="macro", zero_division=0) on those labels,
    in numpy, since the bootstrap calls it 2000 times."""
    Y, pred = np.asarray(Y, dtype=bool), np.asarray(pred, dtype=bool)
    present = Y.any(0)
    if not present.any():
        return 0.0
    tp = (Y & pred).sum(0)[present]
    denom = 2 * tp + (~Y & pred).sum(0)[present] + (Y & ~pred).sum(0)[present]  # > 0: the genre is present
    return float(np.mean(2 * tp / denom))


def fit_genre_probe(X_fit, Y_fit, C: float = PROBE_C):
    """The fitted one-vs-rest logistic regression (standardized features) of genre_probe_f1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from threadpoolctl import threadpool_limits

    clf = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=C, max_iter=2000)))
    # small problem: a multi-threaded BLAS only adds contention (see geometry._measure)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", UserWarning)  # "label not present in all training examples"
        clf.fit(np.asarray(X_fit, dtype=np.float64), Y_fit)
    return clf


def _probe_genre_f1(inputs) -> Nulled:
    items, genres = inputs.dataset.items, list(inputs.dataset.genres)
    if not genres:
        raise Absent(f"dataset {inputs.dataset.name!r} has no genres")
    X_fit, t_fit = inputs.fit_split
    clf = fit_genre_probe(X_fit, genre_matrix(t_fit, items, genres))
    E = np.asarray(inputs.interest, dtype=np.float64)
    Y = genre_matrix(inputs.probe_targets, items, genres)
    pred, pred_shuf = clf.predict(E), clf.predict(E[derangement(len(E))])
    real_iv = bootstrap.of_statistic(len(Y), lambda idx: macro_f1(Y[idx], pred[idx]))
    shuf_iv = bootstrap.of_statistic(len(Y), lambda idx: macro_f1(Y[idx], pred_shuf[idx]))
    return Nulled(macro_f1(Y, pred), macro_f1(Y, pred_shuf), real_iv, shuf_iv)


@register("probe_genre_f1", higher_is_better=True, needs=NEEDS)
def probe_genre_f1(inputs) -> Measurement:
    """Linear-probe genre decodability: macro-F1 over genres present in the test targets of a
    one-vs-rest logistic regression (standardized features, C = 1) from the interest embedding to
    the target item's genres (multi-label), fitted on 192 seeded valid-split examples of users
    that are not scored, scored on the captured test probes. The recipe is identical for every run.

    Range [0, 1]; higher = genre is linearly readable from the embedding; frequent genres are
    guessed without it, so read probe_genre_f1_gain. Reference: linear probing (Alain & Bengio,
    "Understanding intermediate layers using linear classifier probes", 2016).
    """
    return _real("probe_genre_f1", _nulled(inputs, "probe_genre_f1", _probe_genre_f1))


def _decoder_scores(inputs, backbone, tokenizer, decoder: str) -> Nulled:
    """Fit the post-hoc decoder on ``backbone`` (frozen) and score it on real and shuffled embeddings."""
    from karma_probe.analyzers.softprompt import DecoderBudget, SoftPromptDecoder
    from karma_probe.data.prompts import target_text

    items = inputs.dataset.items
    X_fit, t_fit = inputs.fit_split
    dec = SoftPromptDecoder(backbone, tokenizer, BUDGET or DecoderBudget()).fit(X_fit, [target_text(items[int(t)]) for t in t_fit],
                                                     progress=inputs.progress)
    E, texts = np.asarray(inputs.interest), _targets(inputs)
    real, counts = dec.token_hits(E, texts)
    shuf, _ = dec.token_hits(E[derangement(len(E))], texts)
    k = min(SAMPLES, len(texts))
    decoded = dec.decode(E[:k])
    samples = tuple({"history": _history(inputs.probe_texts[i]), "truth": texts[i].strip(), "decoded": decoded[i].strip(),
                     "decoder": decoder} for i in range(k))
    return Nulled(*_pooled(real, shuf, counts), samples=samples)


def _probe_decode_acc(inputs) -> Nulled:
    from karma_probe.analyzers.reader import reader_spec

    backbone, tok = inputs.reader.get(reader_spec(inputs.cfg.model))
    return _decoder_scores(inputs, backbone, tok, "post-hoc")


def _probe_decode_acc_own(inputs) -> Nulled:
    from karma_probe.rundir.layout import UNTRAINED

    if inputs.meta.get("condition") in UNTRAINED:  # an untouched run's own backbone IS the fixed reader
        r = _nulled(inputs, "probe_decode_acc", _probe_decode_acc)
        return Nulled(r.real, r.shuffled, r.real_iv, r.shuffled_iv)
    model = inputs.model
    r = _decoder_scores(inputs, model.backbone, model.tokenizer, "post-hoc-own")
    return Nulled(r.real, r.shuffled, r.real_iv, r.shuffled_iv)  # samples come from the fixed reader only


@register("probe_decode_acc", higher_is_better=True, needs=NEEDS)
def probe_decode_acc(inputs) -> Measurement:
    """Post-hoc decodability on one fixed reader: teacher-forced token accuracy on the captured
    test probes of a fresh soft-prompt decoder (linear e → k×d, k = 4) trained for a fixed budget
    (40 Adam steps of 8, lr 0.003, seed 0; analyzers/softprompt.py) on the **untouched, frozen**
    backbone of the run's family (analyzers/reader.py: pretrained SmolLM2, the seed-0 tiny init,
    or the local directory) to decode the target item's text (16 tokens, EOS last) from the
    interest embedding, fitted on 192 valid-split examples of users that are not scored.

    Range [0, 1]; part of it is the reader's prior on item-text form ("(19", "|"): read
    probe_decode_acc_gain. Higher = more of the item is readable from the embedding; every run is
    read by the same reader. Reference: KARMA (arXiv 2603.22779); soft prompts after Lester et
    al. (EMNLP 2021).
    """
    return _real("probe_decode_acc", _nulled(inputs, "probe_decode_acc", _probe_decode_acc))


@register("probe_decode_acc_own", higher_is_better=True, needs=NEEDS)
def probe_decode_acc_own(inputs) -> Measurement:
    """probe_decode_acc with the decoder trained on the run's **own** frozen backbone instead of
    the fixed reader (same budget: 40 Adam steps of 8, lr 0.003, seed 0, k = 4, 16 tokens, 192
    valid-split examples): Σ correct target tokens / Σ target tokens over the test probes.

    Range [0, 1]; mixes what the embedding holds with how well this backbone (changed by
    training) reads soft prompts. Higher = more readable by the run itself. For an untouched run
    it equals probe_decode_acc. Reference: KARMA (arXiv 2603.22779); Lester et al. (EMNLP 2021).
    """
    return _real("probe_decode_acc_own", _nulled(inputs, "probe_decode_acc_own", _probe_decode_acc_own))


for _metric, _compute in (("recon_token_acc", _recon_token_acc), ("recon_exact", _recon_exact),
                          ("probe_genre_f1", _probe_genre_f1), ("probe_decode_acc", _probe_decode_acc),
                          ("probe_decode_acc_own", _probe_decode_acc_own)):
    _register_null(_metric, _compute)
