"""Colours shared by the PDF report and the dashboard, so the same thing looks the same in both.

Two kinds: table cells (a verdict's fill) and runs in figures. A run's look is decided here alone,
by :func:`run_look`: one hue per condition (action red, gen green, rec purple, KARMA blue, the
untouched base / reference black), a seed as a shade of that hue plus a line style, so a study of
13 runs (four conditions x three seeds + base) reads as five colour families, not 13 unrelated
colours. Renderers only draw the :class:`Look` a figure function put on its series.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

GREEN, RED, GREY = "#d9f2d9", "#f8d7d7", "#eeeeee"  # better / holds, worse / does not hold, header
YELLOW = "#fff3cd"  # a run that did not load

# Shades dark to light of each hue family (mostly ColorBrewer's Reds, Greens, ... at steps that
# stay legible on white; reds that do not drift to orange). A seed picks a shade; the darkest is
# seed 0 and a condition's mean. Within a family hues stay within 25 degrees, between families
# (base aside) they differ by at least 25: tests/test_figures.py holds both.
HUES = {
    "action": ("#a50f15", "#e31a1c", "#f46d6d"),
    "gen": ("#006d2c", "#31a354", "#74c476"),
    "rec": ("#54278f", "#756bb1", "#9e9ac8"),
    "karma": ("#08519c", "#3182bd", "#6baed6"),
    "base": ("#000000", "#525252", "#969696"),  # the untouched model: the reference, in black
}
# Families for anything else: a condition this table does not name, or a second (third ...) group
# of one condition, e.g. base runs of different user models. Distinct from every hue above.
SPARE_HUES = (
    ("#b35806", "#e08214", "#fdb863"),  # orange
    ("#01665e", "#35978f", "#80cdc1"),  # teal
    ("#ae017e", "#dd3497", "#e377c2"),  # pink
    ("#7a7a00", "#a3a300", "#c2c23d"),  # olive
)
# Line styles by seed, in plotly's names; render.py maps them to matplotlib's.
DASHES = ("solid", "dash", "dot", "dashdot")


def verdict_colour(text: str) -> str | None:
    """The fill for a verdict word: green for "better" / "holds ...", red for "worse" / "does not
    hold ...", None for anything else ("same", "within noise", a number)."""
    if text == "better" or text.startswith("holds"):
        return GREEN
    if text == "worse" or text.startswith("does not hold"):
        return RED
    return None


@dataclass(frozen=True)
class Look:
    """How one run (or one condition's mean) is drawn: a colour and a line style (``DASHES``)."""

    colour: str
    dash: str = "solid"


def run_look(condition: str, seed: int | None = None, group: int = 0) -> Look:
    """The look of the run of ``condition`` with ``seed``, in the ``group``-th group of that
    condition (0 for the first or only one; base runs of two different models are groups 0 and 1).

    Hue: the condition's family (``HUES``); group g >= 1, or a condition not in ``HUES``, takes a
    spare family (``SPARE_HUES``), so two groups of one condition never share a hue. Seed:
    shade ``seed mod 3`` and dash ``seed mod 4``, so any 12 consecutive seeds of one condition
    differ in shade or dash, and seeds 0, 1, 2 differ in both. ``seed=None`` (a condition's mean,
    a run without a seed): the darkest shade, solid.
    """
    if group == 0 and condition in HUES:
        shades = HUES[condition]
    else:  # a stable choice per (condition, group): crc32, not hash(), which Python salts per process
        shades = SPARE_HUES[(zlib.crc32(condition.encode()) + group) % len(SPARE_HUES)]
    if seed is None:
        return Look(shades[0])
    return Look(shades[seed % len(shades)], DASHES[seed % len(DASHES)])


def group_of(run: Any) -> Hashable:
    """What makes runs of one condition a separate curve family: the group they are seeds of
    (results.Run.group: model, preset, condition, config variant, reference kind)."""
    return run.group


def run_looks(runs: Sequence[Any], group: Callable[[Any], Hashable] = group_of) -> dict[str, Look]:
    """``{run.name: run_look(...)}`` for ``runs`` (karma_probe.report.results.Run): each run's group index
    is the order in which its ``group`` key first appears among the runs of its condition."""
    groups: dict[str, list[Hashable]] = {}
    looks = {}
    for run in runs:
        seen = groups.setdefault(run.condition, [])
        key = group(run)
        if key not in seen:
            seen.append(key)
        looks[run.name] = run_look(run.condition, run.seed, seen.index(key))
    return looks
# marker and line colours of a verdict (forest plot): strong where the table fills are pale
VERDICT_INK = {"holds": "#1a7f37", "does not hold": "#c0392b", "within noise": "#6e7781", "no CI": "#b8b8b8"}
VERDICT_LEGEND = {"holds": "holds", "does not hold": "does not hold (reversed)", "within noise": "within noise",
                  "no CI": "no CI"}


def verdict_key(status: str) -> str:
    """A status as :data:`VERDICT_INK` keys it: "holds (one seed)" → "holds", "better" → "holds",
    "worse" → "does not hold"."""
    word = status.removesuffix(" (one seed)")
    return {"better": "holds", "worse": "does not hold"}.get(word, word if word in VERDICT_INK else "no CI")
