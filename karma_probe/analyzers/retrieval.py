"""Retrieval metrics, copied from the test split of ``RUN/metrics.json`` (written by training).

They are computed there by karma_probe/train/evaluate.py on the full catalogue; the analysis only
carries them next to the collapse metrics so one file holds the whole picture, and so the CI
gate reads their direction from the registry like every other metric.
"""

from __future__ import annotations

from karma_probe.analyzers.registry import Measurement, register
from karma_probe.core.errors import BadInput
from karma_probe.rundir.analysis import Record

_DOCS = {
    "hr@K": """Hit rate at {k}: mean over test users of [rank ≤ {k}], where rank = 1 + #{{catalogue items
    (excluding the user's history) scored above the target}}. Range [0, 1]; higher is better.
    Reference: RecBole ``Hit`` (Zhao et al., CIKM 2021); copied from metrics.json, test split.""",
    "ndcg@K": """Normalized DCG at {k} with one relevant item: mean over test users of
    [rank ≤ {k}] / log2(rank + 1). Range [0, 1]; higher is better. Reference: Järvelin & Kekäläinen
    (TOIS 2002); copied from metrics.json, test split.""",
    "mrr": """Mean reciprocal rank: mean over test users of 1 / rank. Range (0, 1]; higher is
    better. Reference: Voorhees (TREC-8 QA, 1999); copied from metrics.json, test split.""",
}


def _copy(name: str, doc: str):
    def analyzer(inputs) -> Measurement:
        test = inputs.retrieval
        if name not in test:
            raise BadInput(f"{inputs.metrics_path}: test split has no {name!r} (has {', '.join(test)})")
        value = float(test[name])
        return Measurement(value, (Record(name, value, set="test"),))

    analyzer.__name__ = analyzer.__qualname__ = name.replace("@", "_at_")
    analyzer.__doc__ = doc
    return register(name, higher_is_better=True, needs=("metrics",))(analyzer)


for _k in (10, 50, 200):
    _copy(f"hr@{_k}", _DOCS["hr@K"].format(k=_k))
_copy("ndcg@10", _DOCS["ndcg@K"].format(k=10))
_copy("mrr", _DOCS["mrr"])
