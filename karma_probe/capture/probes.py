"""The fixed, seeded probe set that every capture of every run is measured on.

Two sets, so collapse on the task prompts can be told apart from damage to general language
(and a third, the user's own prompts, when a ``--probes-file`` is given):

- ``history``: N test-split examples of the run's dataset, drawn with ``random.Random(seed)``:
  the newest ``max_items`` history items, rendered by ``prompts.history_prompt`` (ending in the
  interest marker) for text-interface runs, fed as the run's own item input embeddings for
  continuous-interface runs. Each probe remembers its user and target item (the test item), so
  hidden states and interest embeddings can be scored against the truth.
- ``text``: the first ``DEFAULT_TEXT_PROBES`` (by default) of the short general-knowledge passages
  written for this project (``karma_probe/resources/passages.txt``, one passage per
  blank-line-separated block). The analyzers use all of them for ``lm_ppl`` through
  :func:`general_passages`.
- ``user``: the prompts of a probes file (:func:`read_probes_file`), in file order, tokenized with
  the model's tokenizer defaults (special tokens such as BOS included, as the model sees a prompt).
  A user's own model captured without a dataset has no history probes: then text + user only.

The same seed, dataset and N give the same probes in the same order on every machine, so runs
(and shards of one run, see :func:`shard`) are comparable probe by probe.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from karma_probe.core.errors import BadInput
from karma_probe.rundir.layout import PROBE_SETS

PROBE_SEED = 0
DEFAULT_PROBES = 64
# The capture's text probes: the first 32 passages (the whole file before issue 26 added more for
# lm_ppl), so capture cost and earlier captures' text probes stay as they were; lm_ppl reads all.
DEFAULT_TEXT_PROBES = 32
DEFAULT_MAX_ITEMS = 6  # newest history items in a prompt when the run config does not say
SETS = PROBE_SETS  # ("history", "text", "user"): named by the capture format


@dataclass(frozen=True)
class Probe:
    set: str  # "history" | "text" | "user"
    text: str
    user: str | None = None  # history probes: the test user
    target: int | None = None  # history probes: the test target's item index
    items: tuple[int, ...] = ()  # history probes: the newest max_items history items (continuous-interface input)


@dataclass(frozen=True)
class ProbeSet:
    seed: int
    max_items: int
    history: tuple[Probe, ...]
    text: tuple[Probe, ...]
    user: tuple[Probe, ...] = ()

    def by_set(self, name: str) -> tuple[Probe, ...]:
        return getattr(self, name)

    def __len__(self) -> int:
        return sum(len(self.by_set(name)) for name in SETS)


@lru_cache(maxsize=1)
def _passages() -> tuple[str, ...]:
    raw = resources.files("karma_probe").joinpath("resources/passages.txt").read_text(encoding="utf-8")
    blocks = [" ".join(line.strip() for line in block.splitlines() if line.strip()) for block in raw.split("\n\n")]
    return tuple(b for b in blocks if b)


def general_passages() -> list[str]:
    """The general-text probe passages, in file order (each a few sentences, one line each)."""
    return list(_passages())


def history_probes(dataset, n: int, *, seed: int = PROBE_SEED, max_items: int = DEFAULT_MAX_ITEMS) -> list[Probe]:
    """``n`` test-split examples drawn without replacement by ``random.Random(seed)`` (all if fewer)."""
    from karma_probe.data.prompts import history_prompt

    if n < 0:
        raise BadInput(f"--probes must be >= 0, got {n}")
    test = dataset.split().test
    if not test and n:
        raise BadInput(f"dataset {dataset.name!r} has no test-split users (each user needs at least 3 interactions)")
    chosen = random.Random(seed).sample(range(len(test)), min(n, len(test)))
    out = []
    for i in chosen:
        ex = test[i]
        items = [dataset.items[j] for j in ex.history]
        out.append(Probe("history", history_prompt(items, max_items), user=ex.user, target=ex.target,
                         items=tuple(ex.history[-max_items:])))
    return out


def text_probes(n: int | None = None) -> list[Probe]:
    """The first ``n`` general passages (all when ``n`` is None)."""
    passages = general_passages()
    if n is not None:
        if n < 0:
            raise BadInput(f"--text-probes must be >= 0, got {n}")
        passages = passages[:n]
    return [Probe("text", p) for p in passages]


def read_probes_file(path: str | Path) -> list[Probe]:
    """The user's own prompts: ``*.jsonl`` holds one JSON object per line with a string ``text``
    field; any other file is plain text, one prompt per line. Blank lines are skipped, line ends
    stripped. A malformed line is BadInput naming ``file:line``; a file without prompts too."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    jsonl = path.suffix.lower() == ".jsonl"
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        text = line
        if jsonl:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{number}: not valid JSON ({e.msg})") from None
            text = obj.get("text") if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise BadInput(f"{path}:{number}: expected an object with a non-empty string 'text' field")
        out.append(Probe("user", text))
    if not out:
        raise BadInput(f"{path}: no prompts (blank lines are skipped)")
    return out


def build_probe_set(dataset, n_history: int = DEFAULT_PROBES, *, n_text: int | None = DEFAULT_TEXT_PROBES, seed: int = PROBE_SEED,
                    max_items: int = DEFAULT_MAX_ITEMS, user: list[Probe] | tuple[Probe, ...] = ()) -> ProbeSet:
    """The full probe set (``n_text`` None: every passage); an empty one is bad input (there would be nothing to measure).

    ``dataset`` None: no history probes (a user's own model captured without a dataset)."""
    history = history_probes(dataset, n_history, seed=seed, max_items=max_items) if dataset is not None else []
    probes = ProbeSet(seed=seed, max_items=max_items, history=tuple(history), text=tuple(text_probes(n_text)),
                      user=tuple(user))
    if not len(probes):
        raise BadInput("empty probe set: ask for at least one history probe (--probes N) or text probe (--text-probes N)")
    return probes


def shard(probes: ProbeSet, index: int, count: int) -> ProbeSet:
    """Contiguous shard ``index`` of ``count`` of each set, so merged shards keep the probe order."""
    if not (count >= 1 and 0 <= index < count):
        raise BadInput(f"--shard {index}/{count}: expected I/N with 0 <= I < N")

    def part(seq):
        n = len(seq)
        return seq[n * index // count: n * (index + 1) // count]

    return ProbeSet(probes.seed, probes.max_items, part(probes.history), part(probes.text), part(probes.user))


def shard_offset(probes: ProbeSet, index: int, count: int, name: str) -> int:
    """Global index of the first probe of set ``name`` in shard ``index`` (for numbering full maps)."""
    return len(probes.by_set(name)) * index // count
