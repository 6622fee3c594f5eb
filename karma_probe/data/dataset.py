"""Interaction data in RecBole's atomic format, chronological sequences, leave-one-out split.

Atomic files are tab-separated with a typed header, e.g. ``item_id:token	movie_title:token_seq``.
``NAME.inter`` holds (user, item, timestamp) rows, ``NAME.item`` one row per item. MovieLens-100k
is read from the files the ``recbole`` package ships (it is never imported: we only need its data).

Split (per user, after sorting by time): test target = last item, valid target = second-last,
train = everything before. A user needs at least three interactions to appear in the split.
The split's examples are (user, end) positions over each user's one stored sequence
(:class:`Examples`), so its memory is linear in the interactions however long one user's history.
"""

from __future__ import annotations

import importlib.util
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from karma_probe.core.errors import BadInput

TITLE_FIELDS = ("movie_title", "title", "item_name", "name")
YEAR_FIELDS = ("release_year", "year")
GENRE_FIELDS = ("class", "genre", "genres", "categories")


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    year: str = ""
    genres: tuple[str, ...] = ()


@dataclass(frozen=True)
class Example:
    """One prediction: the user's history (item indices, oldest first) and the next item."""

    user: str
    history: tuple[int, ...]
    target: int


class Examples(Sequence[Example]):
    """Examples as (user, end) pairs over one stored sequence per user, so memory is linear in the
    interactions (storing every prefix would be quadratic in a user's length).

    Example k is ``seqs[owner[k]][:end[k]] → seqs[owner[k]][end[k]]``; its history is sliced when
    the example is read, and :meth:`window` slices only the newest items (what a batch needs).
    """

    def __init__(self, users: Sequence[str], seqs: Sequence[tuple[int, ...]], owner, end):
        self.users, self.seqs = tuple(users), tuple(seqs)
        self.owner = np.asarray(owner, dtype=np.int64)  # (K,) index into users / seqs
        self.end = np.asarray(end, dtype=np.int64)  # (K,) the target's position in its user's sequence
        if self.owner.shape != self.end.shape or self.owner.ndim != 1:
            raise ValueError("owner and end must be 1-d arrays of one length")

    @classmethod
    def of(cls, examples: Sequence[Example]) -> Examples:
        """Wrap hand-made examples (each its own sequence: history + target); Examples stay as they are."""
        if isinstance(examples, Examples):
            return examples
        examples = list(examples)
        return cls([e.user for e in examples], [tuple(e.history) + (e.target,) for e in examples],
                   np.arange(len(examples)), [len(e.history) for e in examples])

    def __len__(self) -> int:
        return len(self.end)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return Examples(self.users, self.seqs, self.owner[k], self.end[k])
        return self.window(k)

    def __iter__(self):
        for k in range(len(self)):
            yield self.window(k)

    def window(self, k: int, n: int | None = None) -> Example:
        """Example ``k`` with only its newest ``n`` history items (all when ``n`` is None)."""
        k = range(len(self))[k]  # negative indices, and IndexError past the end
        seq, end = self.seqs[self.owner[k]], int(self.end[k])
        start = 0 if n is None else max(0, end - n)
        return Example(self.users[self.owner[k]], tuple(seq[start:end]), seq[end])

    def prefixes(self) -> list[tuple[int, ...]]:
        """Each user's longest history + target among these examples (users in first-example order;
        the first of equally long ones)."""
        longest: dict[str, tuple[int, int]] = {}  # user -> (owner, end)
        for o, e in zip(self.owner.tolist(), self.end.tolist()):
            user = self.users[o]
            if e > longest.get(user, (-1, -1))[1]:
                longest[user] = (o, e)
        return [tuple(self.seqs[o][: e + 1]) for o, e in longest.values()]


@dataclass(frozen=True)
class Split:
    train: Examples  # every next-item position inside each user's train prefix
    valid: Examples  # one per user: train prefix -> second-last item
    test: Examples  # one per user: train prefix + valid item -> last item


@dataclass(frozen=True)
class Dataset:
    name: str
    items: tuple[Item, ...]  # index i is the item's integer id everywhere else
    sequences: dict[str, tuple[int, ...]]  # user -> item indices, oldest first
    n_interactions: int

    @property
    def genres(self) -> tuple[str, ...]:
        return tuple(sorted({g for it in self.items for g in it.genres}))

    def split(self, min_history: int = 1) -> Split:
        """Leave-one-out, as (user, end) pairs over the stored sequences: linear memory."""
        users = [u for u, seq in self.sequences.items() if len(seq) >= 2 + min_history]
        seqs = [self.sequences[u] for u in users]
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        idx = np.arange(len(users))
        n_train = lengths - 2 - min_history  # targets min_history .. len-3
        owner = np.repeat(idx, n_train)
        first = np.cumsum(n_train) - n_train  # where each user's run of train examples starts
        end = np.arange(len(owner)) - np.repeat(first, n_train) + min_history
        return Split(Examples(users, seqs, owner, end), Examples(users, seqs, idx, lengths - 2),
                     Examples(users, seqs, idx, lengths - 1))

    def stats(self) -> dict:
        s = self.split()
        return {
            "dataset": self.name,
            "users": len(self.sequences),
            "items": len(self.items),
            "interactions": self.n_interactions,
            "genres": len(self.genres),
            "split": {"train": len(s.train), "valid": len(s.valid), "test": len(s.test)},
            "users_in_split": len(s.test),
        }


# --------------------------------------------------------------------------- reading files


def _read_atomic(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Return (field names without types, [(line number, values)]); raise BadInput on any defect."""
    if not path.is_file():
        raise BadInput(f"{path}: file not found")
    with path.open("rb") as f:
        header = _decode(f.readline(), path, 1).rstrip("\n").rstrip("\r")
        if not header:
            raise BadInput(f"{path}:1: empty file, expected a typed header like 'item_id:token'")
        fields, types = [], []
        for col in header.split("\t"):
            name, _, typ = col.partition(":")
            if not typ:
                raise BadInput(f"{path}:1: header column {col!r} has no type (expected NAME:TYPE)")
            if name in fields:  # else the last column of a name would silently win
                raise BadInput(f"{path}:1: duplicate header field {name!r} (columns {fields.index(name) + 1} "
                               f"and {len(fields) + 1})")
            fields.append(name)
            types.append(typ)
        missing = [r for r in required if r not in fields]
        if missing:
            raise BadInput(f"{path}:1: missing required column(s) {', '.join(missing)}; header has {', '.join(fields)}")
        rows = []
        for lineno, raw in enumerate(f, start=2):
            line = _decode(raw, path, lineno).rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            values = line.split("\t")
            if len(values) != len(fields):
                raise BadInput(f"{path}:{lineno}: malformed row: {len(values)} fields, header has {len(fields)}")
            for v, typ, name in zip(values, types, fields):
                if typ == "float" and v != "":
                    try:
                        float(v)
                    except ValueError:
                        raise BadInput(f"{path}:{lineno}: malformed row: column {name} is not a number: {v!r}") from None
            rows.append((lineno, values))
    return fields, rows


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    """One line as UTF-8; a byte that is not is an error naming the place, never a silent U+FFFD."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                       "re-encode the file as UTF-8") from None


def load_atomic(directory: str | Path, name: str | None = None) -> Dataset:
    """Load ``NAME.inter`` + ``NAME.item`` from a directory (NAME defaults to the directory name)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput(f"{directory}: dataset directory not found")
    name = name or directory.name
    item_path, inter_path = directory / f"{name}.item", directory / f"{name}.inter"

    fields, rows = _read_atomic(item_path, ("item_id",))
    col = {f: i for i, f in enumerate(fields)}
    title_f = next((f for f in TITLE_FIELDS if f in col), None)
    if title_f is None:
        raise BadInput(f"{item_path}:1: missing a title column (one of {', '.join(TITLE_FIELDS)})")
    year_f = next((f for f in YEAR_FIELDS if f in col), None)
    genre_f = next((f for f in GENRE_FIELDS if f in col), None)
    items: list[Item] = []
    index: dict[str, int] = {}
    for lineno, v in rows:
        iid = v[col["item_id"]]
        if iid in index:
            raise BadInput(f"{item_path}:{lineno}: duplicate item id {iid!r}")
        index[iid] = len(items)
        items.append(
            Item(
                id=iid,
                title=v[col[title_f]].strip(),
                year=v[col[year_f]].strip() if year_f else "",
                genres=tuple(v[col[genre_f]].split()) if genre_f else (),
            )
        )
    if not items:
        raise BadInput(f"{item_path}: no items")

    fields, rows = _read_atomic(inter_path, ("user_id", "item_id"))
    col = {f: i for i, f in enumerate(fields)}
    has_time = "timestamp" in col
    events: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    for lineno, v in rows:
        iid = v[col["item_id"]]
        if iid not in index:
            raise BadInput(f"{inter_path}:{lineno}: interaction names unknown item id {iid!r} (not in {item_path.name})")
        ts = float(v[col["timestamp"]]) if has_time and v[col["timestamp"]] != "" else float(lineno)
        events[v[col["user_id"]]].append((ts, lineno, index[iid]))
    if not events:
        raise BadInput(f"{inter_path}: no interactions")
    # Ties in time keep file order, so the split is deterministic.
    sequences = {u: tuple(i for _, _, i in sorted(ev)) for u, ev in events.items()}
    return Dataset(name=name, items=tuple(items), sequences=sequences, n_interactions=len(rows))


def ml100k_dir() -> Path:
    """Where the installed ``recbole`` package keeps MovieLens-100k (found without importing it)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("MovieLens-100k comes from the 'recbole' package: pip install --no-deps recbole==1.2.1")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not path.is_dir():
        raise BadInput(f"{path}: the installed recbole package has no ml-100k example data")
    return path


def load_dataset(spec: str | Path = "ml-100k") -> Dataset:
    """``ml-100k`` (the default), ``synthetic`` or ``synthetic:SEED``, or a directory of atomic files."""
    spec = str(spec)
    if spec == "ml-100k":
        return load_atomic(ml100k_dir(), "ml-100k")
    if spec == "synthetic" or spec.startswith("synthetic:"):
        seed = spec.partition(":")[2] or "0"
        try:
            return synthetic_dataset(seed=int(seed))
        except ValueError:
            raise BadInput(f"--dataset {spec}: the seed of synthetic:SEED must be an integer, got {seed!r}") from None
    # anything else is a path (so "syntheticXYZ" is a missing directory, not synthetic seed 0)
    path = Path(spec)
    if path.is_file() and path.suffix in (".inter", ".item"):
        return load_atomic(path.parent, path.stem)
    if not path.is_dir():
        raise BadInput(f"{spec}: dataset directory not found (expected ml-100k, synthetic[:SEED] "
                       "or a directory of RecBole atomic files)")
    return load_atomic(path)


# --------------------------------------------------------------------------- synthetic data

_GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Western", "Musical")
_WORDS = {
    "Action": ("Fist", "Fury", "Strike", "Bullet", "Chase"),
    "Comedy": ("Laugh", "Goof", "Prank", "Giggle", "Joke"),
    "Drama": ("Tears", "Silence", "Letter", "Winter", "Promise"),
    "Horror": ("Scream", "Grave", "Shadow", "Blood", "Curse"),
    "Romance": ("Kiss", "Heart", "Paris", "Rose", "Wedding"),
    "Sci-Fi": ("Robot", "Galaxy", "Laser", "Planet", "Android"),
    "Western": ("Saddle", "Dust", "Sheriff", "Canyon", "Outlaw"),
    "Musical": ("Song", "Dance", "Melody", "Chorus", "Rhythm"),
}
_ADJ = ("Red", "Last", "Silent", "Golden", "Broken", "Wild", "Little", "Dark", "Lucky", "Lost")


def write_synthetic(directory: str | Path, *, n_users: int = 200, n_items: int = 120, seq_len: tuple[int, int] = (8, 20),
                    p_same_genre: float = 0.8, seed: int = 0, name: str = "synthetic", long_user: int = 0) -> Path:
    """Write a seeded dataset in atomic format with planted structure.

    Each user's next item has the previous item's genre with probability ``p_same_genre``
    (else a uniformly random item), so a retriever that reads the history beats chance.
    ``long_user`` > 0 adds one more user with that many interactions (real logs have users with
    thousands of events: benchmarks/long_user.py).
    """
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    by_genre: dict[str, list[int]] = defaultdict(list)
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for i in range(n_items):
        g = _GENRES[i % len(_GENRES)]
        title = f"{rng.choice(_ADJ)} {rng.choice(_WORDS[g])} {i // len(_GENRES) + 1}"
        item_lines.append(f"{i + 1}\t{title}\t{rng.randint(1950, 2000)}\t{g}")
        by_genre[g].append(i + 1)
    inter_lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    t = 800_000_000
    for u in range(n_users + (long_user > 0)):
        item = rng.randint(1, n_items)
        for _ in range(rng.randint(*seq_len) if u < n_users else long_user):
            t += rng.randint(1, 1000)
            inter_lines.append(f"{u + 1}\t{item}\t{rng.randint(1, 5)}\t{t}")
            genre = _GENRES[(item - 1) % len(_GENRES)]
            item = rng.choice(by_genre[genre]) if rng.random() < p_same_genre else rng.randint(1, n_items)
    (directory / f"{name}.item").write_text("\n".join(item_lines) + "\n", encoding="utf-8")
    (directory / f"{name}.inter").write_text("\n".join(inter_lines) + "\n", encoding="utf-8")
    return directory


def synthetic_dataset(seed: int = 0, **kwargs) -> Dataset:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return load_atomic(write_synthetic(Path(tmp) / "synthetic", seed=seed, **kwargs), "synthetic")
