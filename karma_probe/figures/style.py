"""Cell colours shared by the PDF report's tables and the dashboard's, so "better" looks the same in both."""

GREEN, RED, GREY = "#d9f2d9", "#f8d7d7", "#eeeeee"  # better / holds, worse / does not hold, header
YELLOW = "#fff3cd"  # a run that did not load


def verdict_colour(text: str) -> str | None:
    """The fill for a verdict word: green for "better" / "holds ...", red for "worse" / "does not
    hold ...", None for anything else ("same", "within noise", a number)."""
    if text == "better" or text.startswith("holds"):
        return GREEN
    if text == "worse" or text.startswith("does not hold"):
        return RED
    return None


# marker and line colours of a verdict (forest plot): strong where the table fills are pale
VERDICT_INK = {"holds": "#1a7f37", "does not hold": "#c0392b", "within noise": "#6e7781", "no CI": "#b8b8b8"}
VERDICT_LEGEND = {"holds": "holds", "does not hold": "does not hold (reversed)", "within noise": "within noise",
                  "no CI": "no CI"}


def verdict_key(status: str) -> str:
    """A status as :data:`VERDICT_INK` keys it: "holds (one seed)" → "holds", "better" → "holds",
    "worse" → "does not hold"."""
    word = status.removesuffix(" (one seed)")
    return {"better": "holds", "worse": "does not hold"}.get(word, word if word in VERDICT_INK else "no CI")
