"""Data loading, splits, prompt rendering and the bad-input messages."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from karma_probe.core.errors import BadInput
from karma_probe.data.dataset import Example, Examples, load_atomic, load_dataset, write_synthetic
from karma_probe.data.prompts import INTEREST_MARKER, history_prompt, item_text, readable_title


def test_ml100k_counts():
    ds = load_dataset("ml-100k")
    assert len(ds.sequences) == 943
    assert len(ds.items) == 1682
    assert ds.n_interactions == 100000
    s = ds.split()
    assert len(s.valid) == len(s.test) == 943
    # every interaction but each user's first is a target exactly once
    assert len(s.train) + len(s.valid) + len(s.test) == 100000 - 943


def test_leave_one_out_is_chronological():
    ds = load_dataset("ml-100k")
    s = ds.split()
    test = {e.user: e for e in s.test}
    valid = {e.user: e for e in s.valid}
    for user, seq in list(ds.sequences.items())[:50]:
        assert test[user].target == seq[-1] and test[user].history == seq[:-1]
        assert valid[user].target == seq[-2] and valid[user].history == seq[:-2]


def _old_split(ds, min_history=1):
    """The split as it was: every prefix of every history stored (quadratic in a user's length)."""
    train, valid, test = [], [], []
    for user, seq in ds.sequences.items():
        if len(seq) < 2 + min_history:
            continue
        prefix = seq[:-2]
        for t in range(min_history, len(prefix)):
            train.append(Example(user, tuple(prefix[:t]), prefix[t]))
        valid.append(Example(user, tuple(prefix), seq[-2]))
        test.append(Example(user, tuple(seq[:-1]), seq[-1]))
    return train, valid, test


@pytest.mark.parametrize("spec, min_history", [("synthetic:1", 1), ("synthetic:2", 3), ("ml-100k", 1)])
def test_split_as_positions_equals_stored_prefixes(spec, min_history):
    ds = load_dataset(spec)
    new = ds.split(min_history)
    for old, part in zip(_old_split(ds, min_history), (new.train, new.valid, new.test)):
        assert len(part) == len(old) and list(part) == old  # content and order
    # the stored data is one array pair per example, the sequences are the dataset's own
    assert new.train.seqs[0] is ds.sequences[new.train.users[0]]


def test_examples_window_slices_only_the_newest_items():
    ex = Examples(["a", "b"], [(5, 6, 7, 8, 9), (1, 2, 3)], [0, 0, 1], [4, 2, 1])
    assert ex[0] == Example("a", (5, 6, 7, 8), 9) and ex[-1] == Example("b", (1,), 2)
    assert ex.window(0, 2) == Example("a", (7, 8), 9) and ex.window(2, 5) == Example("b", (1,), 2)
    assert list(ex[1:]) == [Example("a", (5, 6), 7), Example("b", (1,), 2)]
    with pytest.raises(IndexError):
        ex[3]
    assert ex.prefixes() == [(5, 6, 7, 8, 9), (1, 2)]
    # hand-made examples: one sequence each, prefixes grouped by user
    made = Examples.of([Example("a", (0,), 1), Example("a", (0, 1), 2), Example("b", (2,), 1)])
    assert list(made) == [Example("a", (0,), 1), Example("a", (0, 1), 2), Example("b", (2,), 1)]
    assert made.prefixes() == [(0, 1, 2), (2, 1)] and Examples.of(made) is made


def test_item_text_and_prompt():
    ds = load_dataset("ml-100k")
    toy = ds.items[0]
    assert item_text(toy) == "Toy Story (1995) | Animation, Children's, Comedy"
    assert readable_title("Net, The") == "The Net"
    p = history_prompt(ds.items[:8], max_items=3)
    assert p.endswith(INTEREST_MARKER)
    assert "Toy Story" not in p and item_text(ds.items[7]) in p
    with pytest.raises(BadInput, match="empty history"):
        history_prompt([])


def test_synthetic_has_planted_structure(tmp_path):
    ds = load_atomic(write_synthetic(tmp_path / "synthetic", seed=3), "synthetic")
    same = total = 0
    for seq in ds.sequences.values():
        for a, b in zip(seq, seq[1:]):
            same += ds.items[a].genres == ds.items[b].genres
            total += 1
    assert same / total > 0.7  # planted 0.8 (+ chance 1/8 on the random draws)
    again = load_atomic(write_synthetic(tmp_path / "again", seed=3, name="synthetic"), "synthetic")
    assert again.sequences == ds.sequences  # seeded


def _write(d: Path, item: str, inter: str):
    d.mkdir(parents=True, exist_ok=True)
    (d / "x.item").write_text(item)
    (d / "x.inter").write_text(inter)
    return d


ITEM = "item_id:token\tmovie_title:token_seq\tclass:token_seq\n1\tA\tDrama\n2\tB\tComedy\n"
INTER = "user_id:token\titem_id:token\ttimestamp:float\nu\t1\t1\nu\t2\t2\nu\t1\t3\n"


@pytest.mark.parametrize(
    "item, inter, message",
    [
        (None, INTER, r"x\.item: file not found"),
        ("item_id:token\tclass:token_seq\n1\tDrama\n", INTER, r"x\.item:1: missing a title column"),
        (ITEM, "user_id:token\ttimestamp:float\nu\t1\n", r"x\.inter:1: missing required column\(s\) item_id"),
        (ITEM, "user_id:token\titem_id:token\ttimestamp:float\nu\t1\t1\nu\t2\n", r"x\.inter:3: malformed row"),
        (ITEM, "user_id:token\titem_id:token\ttimestamp:float\nu\t1\tyesterday\n", r"x\.inter:2: malformed row.*timestamp"),
        (ITEM + "1\tC\tDrama\n", INTER, r"x\.item:4: duplicate item id '1'"),
        (ITEM, INTER + "u\t99\t4\n", r"x\.inter:5: interaction names unknown item id '99'"),
        (ITEM, "user_id:token\titem_id:token\tuser_id:token\nu\t1\tv\n",
         r"x\.inter:1: duplicate header field 'user_id' \(columns 1 and 3\)"),
        ("item_id:token\tmovie_title:token_seq\titem_id:float\n1\tA\t1\n", INTER,
         r"x\.item:1: duplicate header field 'item_id'"),
    ],
    ids=["missing-file", "missing-title", "missing-column", "short-row", "bad-number", "duplicate-id", "unknown-item",
         "duplicate-header-inter", "duplicate-header-item"],
)
def test_bad_input_is_one_clear_message(tmp_path, item, inter, message):
    d = tmp_path / "x"
    _write(d, item or "", inter)
    if item is None:
        (d / "x.item").unlink()
    with pytest.raises(BadInput, match=message):
        load_atomic(d)
    # and through the CLI: exit 2, the message on stderr, no traceback
    r = subprocess.run([sys.executable, "-m", "karma_probe", "data", "stats", "--dataset", str(d)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    import re

    assert re.search(message, r.stderr)


def test_cli_data_stats_ml100k():
    r = subprocess.run([sys.executable, "-m", "karma_probe", "data", "stats"], capture_output=True, text=True, check=True)
    stats = json.loads(r.stdout)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["split"]["test"] == 943


def test_every_subcommand_help_ends_with_examples():
    from karma_probe.cli import COMMANDS

    for name in COMMANDS:
        r = subprocess.run([sys.executable, "-m", "karma_probe", name, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "examples:" in r.stdout and "karma-probe " + name in r.stdout.split("examples:")[1]


def _peak(args: list[str]) -> tuple[int, str, int]:
    """(exit code, stdout, peak RSS in KiB) of ``python -m karma_probe ARGS``, run as the only child
    of a wrapper, so the wrapper's RUSAGE_CHILDREN peak is the command's."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stdout)")
    r = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "karma_probe", *args],
                       capture_output=True, text=True, check=True)
    head, _, out = r.stdout.partition("\n")
    rc, peak_kib = map(int, head.split())
    return rc, out, peak_kib


def _long_user_data(tmp_path) -> Path:
    """1,000 ordinary users (8-20 interactions) and one of 100,000 (benchmarks/long_user.py)."""
    return write_synthetic(tmp_path / "long", n_users=1000, n_items=500, long_user=100_000, name="long")


def test_data_stats_on_one_user_of_100k_interactions_stays_under_1_gb(tmp_path):
    """Linear memory: the split used to store every prefix of a history (≈ 5·10⁹ entries for this
    user: OOM-killed at 19.5 GB). Measured: 94 MiB (benchmarks/README.md)."""
    rc, out, peak_kib = _peak(["data", "stats", "--dataset", str(_long_user_data(tmp_path))])
    assert rc == 0, out
    stats = json.loads(out)
    assert stats["users"] == 1001 and stats["interactions"] >= 100_000 + 8 * 1000
    assert stats["split"]["train"] == stats["interactions"] - 3 * 1001  # every user has >= 3: no one dropped
    assert peak_kib < 1024 * 1024, f"data stats peaked at {peak_kib / 1024:.0f} MiB"


@pytest.mark.slow
def test_one_training_step_on_one_user_of_100k_interactions_stays_under_1_gb(tmp_path):
    """The whole `train --steps 1` (model, step, checkpoint, evaluation of every user): batches
    slice only the newest max_history items. Measured: 486 MiB (benchmarks/README.md)."""
    rc, out, peak_kib = _peak(["train", "--preset", "tiny", "--condition", "action", "--steps", "1", "--threads", "1",
                               "--no-progress", "--dataset", str(_long_user_data(tmp_path)), "--out", str(tmp_path / "r")])
    assert rc == 0, out
    assert json.loads(out)["test"]["hr@10"] >= 0
    assert peak_kib < 1024 * 1024, f"train peaked at {peak_kib / 1024:.0f} MiB"


def test_a_repeated_user_id_header_is_refused_before_it_builds_one_giant_user(tmp_path):
    """The issue's reproduction: an .inter header repeating user_id (the last column won, putting
    every interaction on one user) is now one clear line and exit 2."""
    d = write_synthetic(tmp_path / "dup", n_users=5, name="dup")
    inter = d / "dup.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join([lines[0] + "\tuser_id:token"] + [ln + "\t1" for ln in lines[1:]]) + "\n")
    r = subprocess.run([sys.executable, "-m", "karma_probe", "data", "stats", "--dataset", str(d)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"karma-probe data: error: {inter}:1: duplicate header field 'user_id' (columns 1 and 5)"
