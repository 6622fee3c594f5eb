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
