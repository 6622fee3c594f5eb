"""The bad-input contract, case by case: every bad path, value and dataset is exit code 2 with
exactly one line on stderr, no traceback, nothing on stdout (no "PASS" before a failed write),
and nothing left behind: no new file or directory anywhere under the test's working directory.

Each case runs ``karma_probe.cli.main`` in-process under ``capfd``, which captures the file
descriptors, so a stray warning or progress bar from a library counts as a second line too.

Read-only and full file systems: the tests run as root, where permissions do not stop a write,
and the machine has no read-only mount of its own to use; so an uncreatable place is a path
under /proc (where mkdir fails), a device is /dev/null, and ENOSPC / EROFS are raised by
patching the write the CLI makes (``test_disk_errors_name_the_path``).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path

import pytest

from fakeruns import make_run
from karma_probe.cli import main
from karma_probe.train.loop import train_run

TRAIN = ["train", "--condition", "action", "--steps", "2", "--dataset", "synthetic", "--no-progress",
         "--set", "eval_users=10"]
UNCREATABLE = "/proc/karma-probe-test"  # mkdir fails here even for root


@pytest.fixture
def world(tmp_path, monkeypatch) -> Path:
    """The working directory every case runs in: a regular file, a directory that is not a run,
    a finished (fake) run with a baseline, and two broken datasets."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "precious.txt").write_text("keep me\n")
    run = make_run(tmp_path / "runs", "karma", "karma")
    sink = json.loads((run / "analysis.json").read_text())["summary"]["sink_mass"]
    (tmp_path / "b.json").write_text(json.dumps({"schema": "karma_probe.baseline/1", "source": {},
                                                 "metrics": {"sink_mass": {"value": sink, "abs_tol": 0.1}}}))
    items = "item_id:token\tmovie_title:token_seq\n1\tA\n2\tB\n3\tC\n4\tD\n"
    _dataset(tmp_path / "latin1", (items + "5\tCaf\xe9\n").encode("latin-1"),
             b"user_id:token\titem_id:token\n" + b"".join(b"u\t%d\n" % i for i in (1, 2, 3, 4, 5)))
    # every user has 3 interactions: a valid and a test target each, but nothing to train on
    _dataset(tmp_path / "short", items.encode(), b"user_id:token\titem_id:token\nu\t1\nu\t2\nu\t3\nv\t2\nv\t3\nv\t4\n")
    return tmp_path


def _dataset(d: Path, item: bytes, inter: bytes) -> None:
    d.mkdir()
    (d / f"{d.name}.item").write_bytes(item)
    (d / f"{d.name}.inter").write_bytes(inter)


def _tree(root: Path) -> dict[str, int]:
    """Every path under root (hidden ones too, e.g. an atomic write's temp file) with its size."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")}


def _bad_input(root: Path, argv: list[str], capfd) -> str:
    """Run the CLI; assert the contract; return the one stderr line."""
    before = _tree(root)
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors exit from inside parse_args
        code = e.code
    out, err = capfd.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert out == "", out
    assert _tree(root) == before, "something was written, removed or left behind"
    return err.strip()


CASES = {
    # output paths
    "train-out-is-a-file": (TRAIN + ["--out", "afile"], r"afile: exists and is not a directory"),
    "train-out-under-a-file": (TRAIN + ["--out", "afile/run"], r"afile/run: afile is not a directory"),
    "train-out-uncreatable": (TRAIN + ["--out", f"{UNCREATABLE}/run"], rf"{UNCREATABLE}/run: No such file"),
    "train-overwrite-not-a-run": (TRAIN + ["--out", "notarun", "--overwrite"],
                                  r"notarun is not a karma_probe run directory .*--overwrite only replaces runs"),
    "train-overwrite-a-file": (TRAIN + ["--out", "afile", "--overwrite"], r"afile: exists and is not a directory"),
    "train-into-foreign-dir": (TRAIN + ["--out", "notarun"], r"notarun exists and is not a karma_probe run directory"),
    "report-out-under-a-file": (["report", "runs/karma", "-o", "afile/r.pdf"], r"afile/r.pdf: afile is not a directory"),
    "report-out-is-a-dir": (["report", "runs/karma", "-o", "notarun"], r"notarun: exists and is not a regular file"),
    "report-out-is-a-device": (["report", "runs/karma", "-o", "/dev/null"], r"/dev/null: exists and is not a regular file"),
    "report-out-uncreatable": (["report", "runs/karma", "-o", f"{UNCREATABLE}/r.pdf"], rf"{UNCREATABLE}/r.pdf: "),
    "check-junit-under-a-file": (["check", "runs/karma", "--baseline", "b.json", "--junit", "afile/j.xml"],
                                 r"afile/j.xml: afile is not a directory"),
    "check-junit-uncreatable": (["check", "runs/karma", "--baseline", "b.json", "--junit", f"{UNCREATABLE}/j.xml"],
                                rf"{UNCREATABLE}/j.xml: "),
    "check-json-is-a-dir": (["check", "runs/karma", "--baseline", "b.json", "--junit", "j.xml", "--json", "notarun"],
                            r"notarun: exists and is not a regular file"),
    "check-update-baseline-under-a-file": (["check", "runs/karma", "--baseline", "afile/b.json", "--update-baseline"],
                                           r"afile/b.json: afile is not a directory"),
    "capture-base-out-is-a-file": (["capture", "--model", "tiny", "--out", "afile", "--dataset", "synthetic"],
                                   r"afile: Not a directory"),
    "ls-missing-root": (["ls", "nope"], r"nope: runs directory not found"),
    # values
    "lr-negative": (TRAIN + ["--out", "runs/new", "--set", "lr=-1"], r"lr must be > 0, got -1.0"),
    "lr-nan": (TRAIN + ["--out", "runs/new", "--set", "lr=nan"], r"lr must be a finite number, got nan"),
    "steps-zero": (TRAIN + ["--out", "runs/new", "--steps", "0"], r"steps must be >= 1, got 0"),
    "steps-negative": (TRAIN + ["--out", "runs/new", "--steps", "-5"], r"steps must be >= 1, got -5"),
    "steps-not-an-int": (TRAIN + ["--out", "runs/new", "--steps", "abc"], r"argument --steps: invalid int value: 'abc'"),
    "batch-size-zero": (TRAIN + ["--out", "runs/new", "--set", "batch_size=0"], r"batch_size must be >= 1, got 0"),
    "temperature-zero": (TRAIN + ["--out", "runs/new", "--set", "temperature=0"], r"temperature must be > 0"),
    "warmup-negative": (TRAIN + ["--out", "runs/new", "--set", "warmup_steps=-1"], r"warmup_steps must be >= 0"),
    "checkpoint-every-zero": (TRAIN + ["--out", "runs/new", "--set", "checkpoint_every=0"], r"checkpoint_every must be >= 1"),
    "max-target-tokens-one": (TRAIN + ["--out", "runs/new", "--set", "max_target_tokens=1"], r"max_target_tokens must be >= 2"),
    "reg-weight-negative": (TRAIN + ["--out", "runs/new", "--set", "reg_weight=-0.5"], r"reg_weight must be >= 0"),
    "set-unknown-key": (TRAIN + ["--out", "runs/new", "--set", "learning_rate=1"], r"unknown config key 'learning_rate'"),
    "set-not-a-number": (TRAIN + ["--out", "runs/new", "--set", "lr=fast"], r"--set lr=fast: expected a float"),
    # (--runs-root under a file: were --steps 0 taken as "the preset's steps" again, this fails in
    # a second instead of running the whole study)
    "reproduce-steps-zero": (["reproduce", "--steps", "0", "--no-progress", "--runs-root", "afile/runs"],
                             r"steps must be >= 1, got 0"),
    # datasets
    "dataset-typo": (TRAIN + ["--out", "runs/new", "--dataset", "synthtic"], r"synthtic: dataset directory not found"),
    "dataset-typo-deep-out": (TRAIN + ["--out", "deep/er/run", "--dataset", "synthtic"], r"synthtic: dataset directory"),
    "dataset-synthetic-bad-seed": (TRAIN + ["--out", "runs/new", "--dataset", "synthetic:abc"],
                                   r"synthetic:SEED must be an integer, got 'abc'"),
    "dataset-synthetic-suffix": (TRAIN + ["--out", "runs/new", "--dataset", "syntheticXYZ"],
                                 r"syntheticXYZ: dataset directory not found"),
    "dataset-not-utf8": (TRAIN + ["--out", "runs/new", "--dataset", "latin1"], r"latin1/latin1.item:6: not UTF-8 \(byte 0xe9"),
    "dataset-no-training-examples": (TRAIN + ["--out", "runs/new", "--dataset", "short"],
                                     r"dataset 'short' has no training examples: no user has 4 or more interactions"),
    "data-stats-not-utf8": (["data", "stats", "--dataset", "latin1"], r"latin1/latin1.item:6: not UTF-8"),
}


@pytest.mark.parametrize("argv, message", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_exit_2_one_line_nothing_left(world, capfd, argv, message):
    import re

    line = _bad_input(world, argv, capfd)
    assert line.startswith(f"karma-probe {argv[0]}: error: "), line
    assert re.search(message, line), line


def test_nothing_outside_the_working_dir_either(world, capfd):
    _bad_input(world, ["report", "runs/karma", "-o", "/dev/null"], capfd)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode), "an atomic write must never replace a device"
    assert not Path(UNCREATABLE).exists()


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system"),
                                          (errno.EACCES, "Permission denied")])
def test_disk_errors_name_the_path(world, capfd, monkeypatch, code, reason):
    """A full disk fails the write() itself, which names no file; a read-only one fails the
    create. Both must come out as one line naming the output the user gave."""
    real_write_text = Path.write_text

    def full(self, *a, **k):  # what write() on a full disk raises: errno and no filename
        if self.name.startswith(".j.json."):
            raise OSError(code, os.strerror(code))
        return real_write_text(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    line = _bad_input(world, ["check", "runs/karma", "--baseline", "b.json", "--json", "j.json"], capfd)
    assert line == f"karma-probe check: error: j.json: {reason}"

    def refused(*a, **k):  # what creating a file on a read-only or forbidden file system raises
        raise OSError(code, os.strerror(code), k.get("dir") or (a[3] if len(a) > 3 else None))

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    line = _bad_input(world, ["report", "runs/karma", "-o", "out/r.pdf"], capfd)
    assert line == f"karma-probe report: error: out/r.pdf: {reason}"


def test_check_with_unwritable_junit_prints_no_pass(world, capfd):
    """CI reads exit 1 as a regression and a printed PASS as a pass: neither, when --junit cannot be written."""
    _bad_input(world, ["check", "runs/karma", "--baseline", "b.json", "--junit", "afile/junit.xml"], capfd)
    assert main(["check", "runs/karma", "--baseline", "b.json", "--junit", "junit.xml"]) == 0  # the same check, writable
    assert "PASS" in capfd.readouterr().out and Path("junit.xml").is_file()


def test_usage_errors_are_one_line_too(world, capfd):
    capfd.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["train", "--condition", "nope", "--out", "x"])
    out, err = capfd.readouterr()
    assert e.value.code == 2 and out == "" and len(err.splitlines()) == 1
    assert "argument --condition: invalid choice: 'nope'" in err and "karma-probe train --help" in err


def test_ls_takes_the_runs_root_positionally(world, capfd):
    capfd.readouterr()
    assert main(["ls", "runs"]) == 0
    positional = capfd.readouterr().out
    assert main(["ls", "--runs", "runs"]) == 0
    assert positional == capfd.readouterr().out and positional.splitlines()[1].startswith("karma ")
    _bad_input(world, ["ls", "runs", "--runs", "notarun"], capfd)


# --------------------------------------------------------------------------- the run directory's life


FAST = dict(dataset="synthetic:0", batch_size=8, max_history=4, embed_dim=32, eval_batch_size=64, eval_users=10)


def test_a_failed_start_leaves_no_husk_and_the_fix_runs(world, capfd):
    """A --dataset typo used to leave RUN/config.json alone: ls listed it, and the corrected
    command was refused as "another config". Now nothing is left and the fix just runs."""
    _bad_input(world, TRAIN + ["--out", "runs/new", "--dataset", "synthtic"], capfd)
    assert main(TRAIN + ["--out", "runs/new"]) == 0
    assert json.loads(Path("runs/new/metrics.json").read_text())["n_users_test"] == 10


def test_a_config_only_husk_does_not_block_another_config(world, capfd):
    """Husks written by earlier versions (config.json and nothing else) are not runs."""
    Path("runs/husk").mkdir()
    Path("runs/husk/config.json").write_text(json.dumps({"config_hash": "0123", "train": {"dataset": "nope"}}))
    assert main(TRAIN + ["--out", "runs/husk"]) == 0
    assert json.loads(Path("runs/husk/config.json").read_text())["train"]["dataset"] == "synthetic"


def test_overwrite_replaces_a_run(world, capfd):
    assert main(TRAIN + ["--out", "runs/new"]) == 0
    assert main(TRAIN + ["--out", "runs/new", "--steps", "3"]) == 2  # another config: refused
    assert main(TRAIN + ["--out", "runs/new", "--steps", "3", "--overwrite"]) == 0
    assert json.loads(Path("runs/new/config.json").read_text())["train"]["steps"] == 3
    assert not [p.name for p in Path("runs").iterdir() if p.name.startswith(".")]  # the old run's copy is gone


def test_a_failed_overwrite_keeps_the_old_run(world, capfd):
    """--overwrite with a bad dataset used to delete the old run before refusing the new one."""
    assert main(TRAIN + ["--out", "runs/new"]) == 0
    before = sorted(str(p.relative_to("runs/new")) for p in Path("runs/new").rglob("*"))
    _bad_input(world, TRAIN + ["--out", "runs/new", "--dataset", "synthtic", "--overwrite"], capfd)
    assert sorted(str(p.relative_to("runs/new")) for p in Path("runs/new").rglob("*")) == before
    assert json.loads(Path("runs/new/config.json").read_text())["train"]["dataset"] == "synthetic"
    assert not [p.name for p in Path("runs").iterdir() if p.name.startswith(".")]


def test_elapsed_keeps_counting_after_a_resume(tmp_path):
    from karma_probe.core.config import make_config

    cfg = make_config("tiny", "action", steps=6, checkpoint_every=3, log_every=1, **FAST)
    assert train_run(cfg, tmp_path / "r", progress=False, stop_after=4) == {}  # "killed" in step 5
    train_run(cfg, tmp_path / "r", progress=False)  # resumes from the checkpoint at step 3
    log = [json.loads(line) for line in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    elapsed = [r["elapsed_s"] for r in log]
    assert elapsed == sorted(elapsed) and elapsed[3] > elapsed[2], elapsed  # not back to ~0 at step 4
