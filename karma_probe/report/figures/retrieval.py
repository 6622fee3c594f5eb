"""Retrieval figures: does the model still find the next item? (HR@K over the whole catalogue.)"""

from __future__ import annotations

import re
from typing import Sequence

from karma_probe.report.figures.spec import FigureSpec, ci_note, join_notes, series
from karma_probe.report.figures.style import run_looks
from karma_probe.report.results import Run


def at_k(values: dict[str, float], name: str = "hr") -> dict[int, float]:
    """``{K: value}`` from keys like ``hr@10``, sorted by K."""
    pattern = re.compile(rf"{re.escape(name)}@(\d+)")
    found = {int(m.group(1)): v for k, v in values.items() if (m := pattern.fullmatch(k))}
    return dict(sorted(found.items()))


def hr_at_k(runs: Sequence[Run], split: str = "test", name: str = "hr") -> FigureSpec:
    """``name@K`` against K, one line per run, plus the reference rankers (random, and popularity /
    markov where metrics.json has ``baselines``) as dashed lines.

    Values come from ``metrics.json[split]``; a run without metrics.json falls back to the
    test-split numbers in its analysis summary. Where metrics.json has per-user ``ranks`` for the
    split, each point gets its 95 % bootstrap CI over users as an error bar.
    """
    from karma_probe.report import stats

    lines, references, looks = [], {}, run_looks(runs)
    for run in runs:
        source = (run.metrics or {}).get(split) or (run.summary if split == "test" else {})
        values = at_k(source, name)
        if values:
            ranks = run.ranks(split)
            cis = [stats.rank_metric_ci(ranks, f"{name}@{k}") if ranks is not None else None for k in values]
            lines.append(series(run.name, values.keys(), values.values(),
                                low=[c.low if c else None for c in cis], high=[c.high if c else None for c in cis],
                                look=looks[run.name]))
        rankers = {"random": (run.metrics or {}).get("random") or {}}
        rankers |= {b: v[split] for b, v in ((run.metrics or {}).get("baselines") or {}).items() if v.get(split)}
        for ranker, vals in rankers.items():
            ref = at_k(vals, name)
            if ref and ranker not in references:
                references[ranker] = series(ranker, ref.keys(), ref.values(), dashed=True)
    if lines:
        lines += references.values()
    return FigureSpec(kind="line", title=f"{name.upper()}@K ({split} split)", x_label="K",
                      y_label=f"{name.upper()}@K", series=tuple(lines),
                      note=join_notes("higher is better", ci_note(lines)),
                      log_x=True)  # K = 10, 50, 200: evenly spaced on a log axis
