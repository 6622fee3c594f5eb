"""The one place that turns items and histories into text.

An item renders as ``Toy Story (1995) | Animation, Children's, Comedy``. A history renders as a
list of such lines (newest last) followed by the fixed interest marker; the interest embedding
is read from the hidden state of the marker's last token.
"""

from __future__ import annotations

from collections.abc import Sequence

from karma_probe.data.dataset import Item

HISTORY_HEADER = "A user watched these movies, oldest first:\n"
INTEREST_MARKER = "\nNext:"  # the prompt ends here; its last token carries the interest embedding
_ARTICLES = ("The", "A", "An", "Les", "La", "Le", "Il", "Das", "Der", "Die", "El")


def readable_title(title: str) -> str:
    """MovieLens writes "Net, The (1995)"-style titles; put the article back in front."""
    head, sep, tail = title.rpartition(", ")
    if sep and tail in _ARTICLES:
        return f"{tail} {head}"
    return title


def item_text(item: Item) -> str:
    text = readable_title(item.title)
    if item.year:
        text += f" ({item.year})"
    if item.genres:
        text += " | " + ", ".join(item.genres)
    return text


def history_prompt(history: Sequence[Item], max_items: int | None = None) -> str:
    """The prompt for a history (oldest first); keeps the newest ``max_items`` items."""
    if not history:
        from karma_probe.core.errors import BadInput

        raise BadInput("empty history: a prompt needs at least one item")
    if max_items is not None:
        history = history[-max_items:]
    return HISTORY_HEADER + "\n".join(f"- {item_text(it)}" for it in history) + INTEREST_MARKER


def target_text(item: Item) -> str:
    """What L_gen and L_rec decode after the marker (leading space: it continues the prompt)."""
    return " " + item_text(item)


# ---------------------------------------------------------------------- continuous histories

HISTORY_PREFIX = "User history:"  # after the BOS token, before the first item of a continuous history


def history_prefix_ids(tokenizer, first_token: str = "bos") -> list[int]:
    """Token ids a continuous-interface history starts with: the tokenizer's BOS (when it has one)
    and ``HISTORY_PREFIX``, so position 0 is a real first token, where the attention-sink
    literature measures sinks; ``first_token="none"`` (runs before v3) starts with the oldest item."""
    if first_token == "none":
        return []
    ids = tokenizer(HISTORY_PREFIX, add_special_tokens=False)["input_ids"]
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + list(ids)


def history_codes(prefix_ids: Sequence[int], items: Sequence[int]) -> list[int]:
    """One continuous input sequence: prefix tokens as codes ``-(id + 1)`` (< 0), then item indices
    (>= 0), so a sequence of mixed tokens and items pads, batches and slices like one list of ints
    (``retriever.KarmaModel.history_inputs`` embeds each code)."""
    return [-(t + 1) for t in prefix_ids] + [int(i) for i in items]


def code_token(code: int) -> int:
    """The token id of a prefix code (``history_codes``)."""
    return -code - 1
