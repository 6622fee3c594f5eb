"""The verdict as a picture: one forest plot of the claims, raw and Holm-corrected, by family."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from karma_probe.analyzers.catalogue import FACTS, format_delta, format_value
from karma_probe.report.figures.spec import FigureSpec, ForestRow
from karma_probe.report.figures.style import verdict_key


def claims_forest(entries: Sequence[dict], title: str = "The paper's claims: action-only vs KARMA") -> FigureSpec:
    """One row per claim (study.verdict / summary.json ``verdict`` entries), grouped by metric family
    in catalogue order: its paired effect (> 0: the paper's direction), the raw 95 % CI (thick) and
    the Holm-corrected CI (thin), zero marked, coloured by the corrected verdict.

    The claims are in different units (perplexity, cosine, hit rate), so each row is put on one
    common scale, its signal-to-noise: ``z = value / h`` with h its raw CI's half-width
    ``(high - low) / 2`` (the raw CI then spans about z ± 1 and excludes 0 where |z| > 1; the
    corrected CI is divided by the same h), drawn at ``asinh(z)`` so that z = 2 and z = 2000 both fit
    (ticks at z = 0, ±1, ±3, ±10, ...). Each row's right end prints the numbers in the metric's own
    units (effect, raw and corrected CI, the raw → corrected verdict, or one verdict with "(raw and
    Holm)" where the correction does not change it, the raw and the corrected detection limit). A
    claim without a CI has no bar, only its text; one whose CI has width 0 (every run the same, e.g.
    hr@200 of a 200-item catalogue) is a dot at 0 when its effect is 0, else text alone.
    """
    return _forest(_rows(entries), title, any(e.get("holm") for e in entries))


def claims_forest_regimes(by_regime: dict[str, Sequence[dict]],
                          title: str = "The paper's claims by training regime: action-only vs KARMA") -> FigureSpec:
    """:func:`claims_forest` of several comparisons in one picture, each a regime (``{regime name:
    verdict entries}``, e.g. "top 8 layers", "every layer"): the rows grouped by regime, then by
    family ("top 8 layers · Attention"), each regime's Holm correction its own."""
    rows = [replace(r, group=f"{regime} · {r.group}") for regime, entries in by_regime.items() for r in _rows(entries)]
    return _forest(rows, title, any(e.get("holm") for entries in by_regime.values() for e in entries))


def _rows(entries: Sequence[dict]) -> list[ForestRow]:
    """One row per claim, sorted by family in catalogue order (the scale: see :func:`claims_forest`)."""
    rows = []
    for e in entries:
        holm = e.get("holm") or {}
        low, high = e.get("ci_low"), e.get("ci_high")
        half = (high - low) / 2 if low is not None and high is not None else math.nan
        scale = half if half > 0 else math.nan

        def on_scale(v):
            if v is None or not (math.isfinite(scale) or (half == 0 and v == 0)):
                return math.nan  # no CI; or one of width 0 (every seed the same) and a value off zero
            return math.asinh(v / scale) if math.isfinite(scale) else 0.0

        text = f"{format_delta(e['effect'])}"
        if low is not None:
            text += f" [{format_value(low)}, {format_value(high)}]"
        if holm.get("ci_low") is not None:
            text += f"; Holm [{format_value(holm['ci_low'])}, {format_value(holm['ci_high'])}]"
        if holm and holm["status"] != e["status"]:
            text += f"; {e['status']} → Holm {holm['status']}"
        else:  # one verdict said once (most rows: the correction moves few decisions)
            text += f"; {e['status']}" + (" (raw and Holm)" if holm else "")
        if e.get("detectable") is not None:
            text += f"; detectable {format_value(e['detectable'])}"
            if holm.get("detectable") is not None:
                text += f" (Holm {format_value(holm['detectable'])})"
        fact = FACTS.get(e["metric"])
        rows.append(ForestRow(label=f"{e['metric']} ({e['claim'].removeprefix('action-only ').rsplit(' than ', 1)[0]})",
                              group=fact.title if fact else "Other", x=on_scale(e["effect"]), low=on_scale(low),
                              high=on_scale(high), low_wide=on_scale(holm.get("ci_low")),
                              high_wide=on_scale(holm.get("ci_high")),
                              verdict=verdict_key(holm.get("status", e["status"])), text=text))
    order = {f: i for i, f in enumerate(dict.fromkeys(r.group for r in rows))}
    rows.sort(key=lambda r: order[r.group])  # stable: catalogue order within a family
    return rows


def _forest(rows: Sequence[ForestRow], title: str, corrected: bool) -> FigureSpec:
    drawn = [v for r in rows for v in (r.low, r.high, r.low_wide, r.high_wide, r.x) if math.isfinite(v)]
    right, left = max(drawn + [0.0]), -min(drawn + [0.0])  # how far the rows reach on each side
    ticks = sorted([0.0] + [z for z in Z_TICKS if z == 1 or math.asinh(z) <= right * 1.05]
                   + [-z for z in Z_TICKS if z == 1 or math.asinh(z) <= left * 1.05])
    return FigureSpec(kind="forest", title=title, rows=tuple(rows),
                      x_label="effect ÷ its raw 95 % CI half-width, asinh scale (> 0: the paper's direction; "
                              "beyond ±1: the raw CI excludes 0)",
                      x_tick_values=tuple(math.asinh(z) for z in ticks), x_ticks=tuple(f"{z:+g}" if z else "0" for z in ticks),
                      note=("thick: raw 95 % CI; thin: Holm-corrected CI; colour: the Holm-corrected verdict" if corrected
                            else "thick: 95 % CI; colour: the verdict"))


Z_TICKS = (1, 3, 10, 30, 100, 1000, 10000)  # |z| where the forest's x axis is labelled
