"""Is the interest embedding semantically decodable? (the KARMA property)

All four are scored on the capture's history probes (test split: history → last item), with the
interest embeddings the capture stored:

- ``recon_token_acc`` / ``recon_exact``: through the run's **own** reconstruction path (its
  adapter → soft prompts → its backbone). Only meaningful where L_rec trained it; an untouched
  model has no such path and the metrics are absent.
- ``probe_genre_f1`` / ``probe_decode_acc``: fresh read-outs with one recipe for every run, fitted
  on valid-split examples (history → second-last item, RunInputs.fit_split) and scored on the
  test probes, so an action-only run is judged exactly like a KARMA run.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from karma_probe.analyzers.registry import Absent, Measurement, Record, register

RECON_BATCH = 16
RECON_GREEDY = 16  # probes decoded greedily for recon_exact (no KV cache: ~1.5 s of one core each on SmolLM2)
SAMPLES = 4  # decoded examples written to analysis.json samples.decoded, per decoder
PROBE_C = 1.0  # logistic-regression inverse regularization, on standardized features


def _need_heads(model) -> None:
    if not model.has_heads:
        raise Absent("untouched model: no reconstruction path")


def _targets(inputs) -> list[str]:
    from karma_probe.prompts import target_text

    items = inputs.dataset.items
    return [target_text(items[int(t)]) for t in inputs.probe_targets]


def normalize_title(text: str, year: str = "") -> str:
    """Compare titles, not formatting: drop " | genres" and a trailing "(1995)" (or "(year)" for
    the item's own ``year``, which MovieLens sometimes spells "unkonwn"), casefold, punctuation →
    spaces, collapse whitespace. "Toy Story (1995) | Animation" → "toy story"."""
    text = text.split("|", 1)[0].strip()
    if year and text.endswith(f"({year})"):
        text = text[: -len(year) - 2]
    text = re.sub(r"\(\s*\d{4}\s*\)\s*$", "", text)
    text = re.sub(r"[^\w\s]", " ", text.casefold())
    return " ".join(text.split())


def _history(prompt: str) -> str:
    """The item lines of a history prompt, without the header and the marker."""
    from karma_probe.prompts import HISTORY_HEADER, INTEREST_MARKER

    return prompt.removeprefix(HISTORY_HEADER).removesuffix(INTEREST_MARKER).strip()


def token_accuracy(logits, labels) -> tuple[int, int]:
    """(correct, scored) over positions whose label is not −100; logits (..., V), labels (...)."""
    sel = labels != -100
    return int((logits.argmax(-1)[sel] == labels[sel]).sum()), int(sel.sum())


@register("recon_token_acc", higher_is_better=True, needs=("capture", "model"))
def recon_token_acc(inputs) -> Measurement:
    """Teacher-forced token accuracy of the run's own reconstruction path:
    Σ [argmax p(t_i | soft(e), t_<i) = t_i] / Σ 1 over the target text's tokens (cut to
    max_target_tokens, EOS last, exactly as L_rec trains them), e = captured interest embedding.

    Range [0, 1]; higher = the embedding decodes back to the item (KARMA's L_rec succeeded).
    Absent for an untouched model. Reference: KARMA (arXiv 2603.22779), embedding-conditioned
    reconstruction.
    """
    import torch

    model, cfg = inputs.model, inputs.cfg
    _need_heads(model)
    n, eos = cfg.max_target_tokens, model.tokenizer.eos_token_id
    targets = [t[: n - 1] + [eos] for t in model.tokenize(_targets(inputs))]
    E = torch.as_tensor(np.asarray(inputs.interest), dtype=torch.float32)
    hit = total = 0
    with torch.no_grad():
        for i in range(0, len(targets), RECON_BATCH):
            ids, mask = model.pad(targets[i:i + RECON_BATCH])
            logits, labels = model.reconstruction_logits(E[i:i + RECON_BATCH].to(model.device), ids, mask)
            h, t = token_accuracy(logits, labels)
            hit, total = hit + h, total + t
    value = hit / total
    return Measurement(value, (Record("recon_token_acc", value, set="history"),))


@register("recon_exact", higher_is_better=True, needs=("capture", "model"))
def recon_exact(inputs) -> Measurement:
    """Exact-title rate of greedy decoding through the run's own reconstruction path:
    mean over the first 16 probes of [normalize_title(decoded) = normalize_title(true title)],
    where normalize_title drops " | genres" and a trailing "(year)", casefolds, and turns
    punctuation into spaces.

    Range [0, 1]; higher = the item can be named from the embedding alone. Absent for an untouched
    model. Reference: KARMA (arXiv 2603.22779).
    """
    import torch

    from karma_probe.prompts import readable_title

    model, cfg = inputs.model, inputs.cfg
    _need_heads(model)
    n = min(RECON_GREEDY, len(inputs.probe_targets))
    E = torch.as_tensor(np.asarray(inputs.interest[:n]), dtype=torch.float32)
    decoded = []
    for i in range(0, n, RECON_BATCH):
        decoded += model.reconstruct_greedy(E[i:i + RECON_BATCH], max_new_tokens=cfg.max_target_tokens)
    items = inputs.dataset.items
    truth = [items[int(t)] for t in inputs.probe_targets[:n]]
    hits = [normalize_title(d, it.year) == normalize_title(readable_title(it.title)) for d, it in zip(decoded, truth)]
    value = float(np.mean(hits))
    texts = _targets(inputs)
    samples = tuple({"history": _history(inputs.probe_texts[i]), "truth": texts[i].strip(), "decoded": decoded[i].strip(),
                     "decoder": "run"} for i in range(min(SAMPLES, n)))
    return Measurement(value, (Record("recon_exact", value, set="history"),), samples)


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
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from threadpoolctl import threadpool_limits

    clf = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=C, max_iter=2000)))
    # small problem: a multi-threaded BLAS only adds contention (see geometry._measure)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", UserWarning)  # "label not present in all training examples"
        clf.fit(np.asarray(X_fit, dtype=np.float64), Y_fit)
        pred = clf.predict(np.asarray(X_test, dtype=np.float64))
    present = np.flatnonzero(Y_test.sum(0) > 0)
    return float(f1_score(Y_test, pred, labels=present, average="macro", zero_division=0))


@register("probe_genre_f1", higher_is_better=True, needs=("capture", "model"))
def probe_genre_f1(inputs) -> Measurement:
    """Linear-probe genre decodability: macro-F1 over genres present in the test targets of a
    one-vs-rest logistic regression (standardized features, C = 1) from the interest embedding to
    the target item's genres (multi-label), fitted on 192 seeded valid-split examples, scored on
    the captured test probes. The recipe is identical for every run.

    Range [0, 1]; higher = genre is linearly readable from the embedding. Reference: linear
    probing (Alain & Bengio, "Understanding intermediate layers using linear classifier probes", 2016).
    """
    items, genres = inputs.dataset.items, list(inputs.dataset.genres)
    if not genres:
        raise Absent(f"dataset {inputs.dataset.name!r} has no genres")
    X_fit, t_fit = inputs.fit_split
    value = genre_probe_f1(X_fit, genre_matrix(t_fit, items, genres),
                           inputs.interest, genre_matrix(inputs.probe_targets, items, genres))
    return Measurement(value, (Record("probe_genre_f1", value, set="history"),))


@register("probe_decode_acc", higher_is_better=True, needs=("capture", "model"))
def probe_decode_acc(inputs) -> Measurement:
    """Post-hoc decodability: teacher-forced token accuracy on the captured test probes of a fresh
    soft-prompt decoder (linear e → k×d, k = 4) trained for a fixed budget (40 Adam steps of 8,
    lr 0.003, seed 0; analyzers/softprompt.py) on the run's **frozen** backbone to decode the target
    item's text (16 tokens, EOS last) from the interest embedding, fitted on 192 valid-split examples.

    Range [0, 1]; part of it is the backbone's prior on item-text form ("(19", "|"), so compare
    runs, not the number with 0. Higher = more of the item is readable from the embedding.
    Reference: KARMA (arXiv 2603.22779); soft prompts after Lester et al. (EMNLP 2021).
    """
    from karma_probe.analyzers.softprompt import SoftPromptDecoder
    from karma_probe.prompts import target_text

    model, items = inputs.model, inputs.dataset.items
    X_fit, t_fit = inputs.fit_split
    dec = SoftPromptDecoder(model.backbone, model.tokenizer).fit(
        X_fit, [target_text(items[int(t)]) for t in t_fit], progress=inputs.progress)
    E, texts = np.asarray(inputs.interest), _targets(inputs)
    value = dec.token_accuracy(E, texts)
    k = min(SAMPLES, len(texts))
    decoded = dec.decode(E[:k])
    samples = tuple({"history": _history(inputs.probe_texts[i]), "truth": texts[i].strip(), "decoded": decoded[i].strip(),
                     "decoder": "post-hoc"} for i in range(k))
    records = (Record("probe_decode_acc", value, set="history"),)
    return Measurement(value, records, samples)
