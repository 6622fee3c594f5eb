"""One writer per run directory (issue 28): train, capture, analyze and reproduce share one lock.

The holder is always another real process: a lock taken in this test's own process would prove
nothing about two processes.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from karma_probe.cli import main
from karma_probe.rundir.lock import LOCKS, busy, claim_run, holder, lock_file, try_claim

REPO = Path(__file__).resolve().parent.parent
ENV = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
HOLD = ("import sys\nfrom karma_probe.rundir.lock import try_claim\n"
        "with try_claim(sys.argv[1]) as mine:\n"
        "    print('held' if mine else 'busy', flush=True)\n"
        "    sys.stdin.read()\n")  # holds the lock until the test closes its stdin
FAST = ["--dataset", "synthetic:0", "--set", "batch_size=8", "--set", "max_history=4", "--set", "embed_dim=32",
        "--set", "eval_users=20", "--set", "log_every=1", "--threads", "1", "--no-progress"]


class Holder:
    """A separate python process holding ``run``'s lock until closed."""

    def __init__(self, run: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=ENV)
        assert self.proc.stdout.readline().strip() == "held"

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def held(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    h = Holder(run)
    yield run, h.proc.pid
    h.close()


@pytest.mark.parametrize("argv", [
    ["train", "--preset", "tiny", "--condition", "karma", "--out", "{run}", *FAST],
    ["capture", "{run}"],
    ["analyze", "{run}"],
    ["capture", "--model", "tiny", "--out", "{run}"],
])
def test_a_second_writer_is_refused_naming_the_holder(held, argv, capsys):
    run, pid = held
    assert main([a.replace("{run}", str(run)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pid {pid}: " in err and "-c import sys" in err, err
    assert "another process is writing this run" in err
    assert list(run.iterdir()) == []  # nothing written


def test_the_same_run_by_another_spelling_is_the_same_lock(held, tmp_path, capsys):
    run, pid = held
    (tmp_path / "link").symlink_to(run)
    for spelling in (f"{run}/", str(tmp_path / "runs" / "." / "r"), str(tmp_path / "link")):
        assert main(["analyze", spelling]) == 2
        assert f"pid {pid}" in capsys.readouterr().err
    assert lock_file(tmp_path / "link") == lock_file(run) == tmp_path / "runs" / LOCKS / "r.lock"


def test_reproduce_skips_a_run_a_train_command_holds(held):
    from karma_probe.workflows import reproduce as pipeline

    run, pid = held
    with pipeline.claim(run) as mine:  # reproduce and the commands take the same lock
        assert mine is False
    assert holder(run).startswith(f"pid {pid}: ")


def test_released_when_the_holder_ends_even_killed(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    h = Holder(run)
    h.proc.kill()
    h.proc.wait(timeout=30)
    assert lock_file(run).is_file()  # a killed holder cannot remove its file, but the OS dropped its lock
    with claim_run(run, "analyze"):
        assert holder(run).startswith(f"pid {os.getpid()}: ")
        with try_claim(run) as again:
            assert again is False  # and a claim is exclusive, within one process too
    assert not lock_file(run).parent.exists()  # released: file and lock directory removed, nothing left


def test_a_missing_run_is_refused_before_any_lock_is_made(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope" / "r")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


@pytest.mark.slow
def test_two_trainings_on_one_run_the_second_is_refused_and_the_run_stays_one_training(tmp_path):
    """The issue's case: `train --condition action --steps N` and `train --condition karma` with the
    same --out started together used to both exit 0 and leave karma's checkpoint under action's config."""
    out = tmp_path / "runs" / "same"
    cmd = [sys.executable, "-m", "karma_probe", "train", "--preset", "tiny", "--out", str(out), *FAST]
    first = subprocess.Popen(cmd + ["--condition", "action", "--steps", "60"], env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while holder(out) != f"pid {first.pid}: " + " ".join(first.args) and time.time() < deadline:
        assert first.poll() is None, first.communicate()
        time.sleep(0.1)
    second = subprocess.run(cmd + ["--condition", "karma", "--steps", "20"], env=ENV, capture_output=True, text=True,
                            timeout=300)
    still_training = first.poll() is None
    assert second.returncode == 2, second.stderr
    assert second.stderr.count("\n") == 1 and f"pid {first.pid}: " in second.stderr and "--condition action" in second.stderr
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert still_training  # the refusal came while the first one was working, not after it
    config = json.loads((out / "config.json").read_text())
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert (config["condition"], config["train"]["steps"]) == ("action", 60)
    assert (state["condition"], state["step"]) == ("action", 60) and state["config_hash"] == config["config_hash"]
    assert [r["step"] for r in log] == list(range(1, 61))


def test_ls_marks_a_run_being_written_without_taking_its_lock(tmp_path, capsys):
    """`karma-probe ls` names the process writing a run; a killed writer's leftover file is not busy."""
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"condition": "action", "seed": 0, "train": {}}))
    h = Holder(run)
    assert busy(run).startswith(f"pid {h.proc.pid}: ")
    assert main(["ls", str(tmp_path / "runs"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["busy"].startswith(f"pid {h.proc.pid}: ")
    assert main(["ls", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "(busy)" in out and f"r: busy, being written by pid {h.proc.pid}: " in out
    with try_claim(run) as mine:
        assert mine is False  # ls took nothing: the holder still has it
    h.proc.kill()
    h.proc.wait(timeout=30)
    assert lock_file(run).is_file() and busy(run) is None  # a dead holder's file is not a writer
    h.proc.stdin.close()
    assert main(["ls", str(tmp_path / "runs"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["busy"] is None
    assert busy(tmp_path / "runs" / "other") is None  # never locked


def test_ls_shows_how_far_an_unfinished_training_got(tmp_path, capsys):
    """A run without its final checkpoint lists the last logged step of its configured steps; a
    finished one does not (its stages say it)."""
    root = tmp_path / "runs"
    for name, logged, done in (("going", [1, 2, 3], False), ("done", [1, 2, 3, 4], True)):
        run = root / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"condition": "action", "seed": 0, "train": {"steps": 4}}))
        (run / "train_log.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in logged))
        if done:
            (run / "checkpoint").mkdir()
            (run / "checkpoint" / "config.json").write_text("{}")
    assert main(["ls", str(root), "--json"]) == 0
    rows = {r["run"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["going"]["progress"] == "step 3/4" and rows["done"]["progress"] is None
    assert main(["ls", str(root)]) == 0
    assert "step 3/4" in capsys.readouterr().out
