"""Retrieval figures: does the model still find the next item? (HR@K over the whole catalogue.)"""

from __future__ import annotations

import re
from typing import Sequence

from karma_probe.figures.spec import FigureSpec, series
from karma_probe.results import Run


def at_k(values: dict[str, float], name: str = "hr") -> dict[int, float]:
    """``{K: value}`` from keys like ``hr@10``, sorted by K."""
    pattern = re.compile(rf"{re.escape(name)}@(\d+)")
    found = {int(m.group(1)): v for k, v in values.items() if (m := pattern.fullmatch(k))}
    return dict(sorted(found.items()))


def hr_at_k(runs: Sequence[Run], split: str = "test", name: str = "hr") -> FigureSpec:
    """``name@K`` against K, one line per run, plus the random ranker's curve when metrics.json has it.

    Values come from ``metrics.json[split]``; a run without metrics.json falls back to the
    test-split numbers in its analysis summary.
    """
    lines, random_line = [], None
    for run in runs:
        source = (run.metrics or {}).get(split) or (run.summary if split == "test" else {})
        values = at_k(source, name)
        if values:
            lines.append(series(run.name, values.keys(), values.values()))
        rand = at_k((run.metrics or {}).get("random") or {}, name)
        if rand and random_line is None:
            random_line = series("random", rand.keys(), rand.values(), dashed=True)
    if random_line is not None and lines:
        lines.append(random_line)
    return FigureSpec(kind="line", title=f"{name.upper()}@K ({split} split)", x_label="K",
                      y_label=f"{name.upper()}@K", series=tuple(lines), note="higher is better",
                      log_x=True)  # K = 10, 50, 200: evenly spaced on a log axis
