"""Multi-process training: launched processes form one process group with one writer, or are
refused before anything is written; a run records its world size and effective batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from karma_probe.core.config import make_config
from karma_probe.core.errors import BadInput
from karma_probe.train.distributed import check_world, launched_world
from karma_probe.train.loop import _prepare_dir

REPO = Path(__file__).resolve().parent.parent


def test_launched_world_and_the_check_that_launched_processes_joined():
    assert launched_world({}) == 1 and launched_world({"WORLD_SIZE": "4"}) == 4
    with pytest.raises(BadInput, match="WORLD_SIZE='two'"):
        launched_world({"WORLD_SIZE": "two"})
    check_world(1, 1)
    check_world(2, 2)
    with pytest.raises(BadInput, match=r"started 2 processes \(WORLD_SIZE=2\) but they did not join one process group "
                                       r"\(1 joined\).*torchrun --standalone --nproc_per_node N -m karma_probe train"):
        check_world(2, 1)


def test_launched_processes_that_run_alone_are_refused_before_writing(tmp_path, monkeypatch, capfd):
    """The issue's fault: launched as 2 on a machine where Accelerate did not join them (as it did not
    on CPUs), each process trained alone into the same run. Simulated in one process: the launcher's
    WORLD_SIZE, and a CUDA that the Accelerator is not asked to leave for gloo."""
    import torch

    from karma_probe.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # so accelerator() keeps cpu=False
    out = tmp_path / "runs" / "x"
    code = main(["train", "--condition", "action", "--steps", "1", "--dataset", "synthetic", "--no-progress",
                 "--out", str(out)])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "did not join one process group (1 joined)" in err[0]
    assert not (tmp_path / "runs").exists()  # nothing written


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    cfg = make_config("tiny", "action", dataset="synthetic").resolve()
    meta = _prepare_dir(cfg, tmp_path / "r", "r", "tiny", False, world_size=2)
    assert (meta["world_size"], meta["effective_batch_size"]) == (2, 2 * cfg.batch_size)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["world_size"] == 2
    (tmp_path / "r" / "train_log.jsonl").write_text('{"step": 1}\n')  # the run has started
    assert _prepare_dir(cfg, tmp_path / "r", "r", "tiny", False, world_size=2)["world_size"] == 2
    with pytest.raises(BadInput, match=r"trained by 2 process\(es\), this start has 1: resume it with 2"):
        _prepare_dir(cfg, tmp_path / "r", "r", "tiny", False, world_size=1)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate-multi-gpu"])
def test_two_launched_cpu_processes_train_one_consistent_run(tmp_path, launcher):
    """The README's torchrun command on CPUs (gloo), and the issue's reproduction (`accelerate launch
    --multi_gpu --num_processes 2` on a CPU machine, which started two independent trainings into
    one run): one process group, one run directory written by rank 0 alone."""
    from karma_probe.model.retriever import load_run_model

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    launch = {  # python -m torch.distributed.run is the `torchrun` command, with this interpreter
        "torchrun": ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
        "accelerate-multi-gpu": ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                                 "--main_process_port", str(_free_port())],
    }[launcher]
    r = subprocess.run([sys.executable, "-m", *launch, "-m", "karma_probe", "train", "--preset", "tiny",
                        "--condition", "action", "--steps", "4", "--threads", "1", "--dataset", "synthetic",
                        "--no-progress", "--out", str(out), "--set", "eval_users=10", "--set", "log_every=1",
                        "--set", "checkpoint_every=2"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["run"] == str(out)  # printed once, by rank 0
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["effective_batch_size"] == 2 * config["train"]["batch_size"]
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # one writer: each logged step once
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    model, _, cfg = load_run_model(out)
    assert cfg.steps == 4 and (out / "metrics.json").is_file()
    assert not list(out.glob(".*"))  # no temp files left by a second writer


def test_on_main_returns_the_result_or_raises_the_main_process_failure_as_it_is():
    from types import SimpleNamespace

    from karma_probe.train.distributed import on_main

    def fail():
        raise NotADirectoryError(20, "x is not a directory")

    alone = SimpleNamespace(is_main_process=True, num_processes=1)
    assert on_main(alone, lambda: {"a": 1}) == {"a": 1}
    with pytest.raises(NotADirectoryError):  # its own type: the CLI words an OSError itself
        on_main(alone, fail)


@pytest.mark.slow
def test_a_refusal_of_rank_0_reaches_every_process(tmp_path):
    """--out names a directory that is not a run: rank 0 refuses, and rank 1 stops with the same
    line instead of waiting for it forever; nothing is written."""
    out = tmp_path / "notarun"
    out.mkdir()
    (out / "precious.txt").write_text("keep me\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "karma_probe", "train", "--condition", "action", "--steps", "1", "--threads", "1",
                        "--dataset", "synthetic", "--no-progress", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0
    refusals = [ln for ln in r.stderr.splitlines() if "is not a karma_probe run directory" in ln]
    assert len(refusals) == 2, r.stderr[-3000:]  # one line from each process
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
