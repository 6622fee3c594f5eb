"""Fingerprinted derivations (issue 28): checkpoint → capture → analysis, and every reader's mark.

One real tiny run (trained, captured, analyzed in this process) is copied per test and then
re-captured, truncated or re-trained the way the issue did it by hand; each reader — ``ls``,
``report``, ``check``, the dashboard's loader — must then say STALE or BROKEN, and ``check`` must
refuse (exit 2), never pass the old analysis.
"""

import json
import shutil

import pytest

from karma_probe.analyzers.run import analyze_run
from karma_probe.capture.run import CaptureOptions, capture_run
from karma_probe.cli import main
from karma_probe.core.config import make_config
from karma_probe.report.results import list_runs, load_run
from karma_probe.rundir import RunPaths
from karma_probe.rundir.chain import chain_status, fingerprint, safetensors_problem
from karma_probe.train.loop import train_run

FAST = dict(dataset="synthetic:0", batch_size=8, max_history=4, embed_dim=32, eval_users=20, steps=2)
OPTS = CaptureOptions(probes=4, text_probes=2, max_len=32, full_maps=1, progress=False)
METRICS = "sink_mass,erank"


# a real run is trained, captured and analyzed once (~15 s of CPU): its tests are in the slow tier
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    run = tmp_path_factory.mktemp("chain") / "r"
    train_run(make_config("tiny", "karma", **FAST), run, progress=False, threads=1)
    capture_run(run, OPTS)
    analyze_run(run, metrics=METRICS, threads=1)
    return run


@pytest.fixture
def run(made, tmp_path):
    """A copy of the made run (cp -r: new modification times, same bytes) under tmp_path/runs."""
    out = tmp_path / "runs" / "r"
    shutil.copytree(made, out)
    return out


def _ls(root, capsys):
    assert main(["ls", str(root)]) == 0
    return capsys.readouterr().out


def _check(run, tmp_path, capsys):
    """``check RUN --baseline`` of a baseline written from the run when it was fresh."""
    return main(["check", str(run), "--baseline", str(tmp_path / "b.json")]), capsys.readouterr()


def _baseline(run, tmp_path, capsys):
    assert main(["check", str(run), "--baseline", str(tmp_path / "b.json"), "--update-baseline"]) == 0
    capsys.readouterr()


@SLOW
def test_a_fresh_run_is_ok_everywhere_and_a_copy_stays_ok(run, tmp_path, capsys):
    manifest = json.loads(RunPaths(run).manifest.read_text())
    analysis = json.loads(RunPaths(run).analysis.read_text())
    assert manifest["derived_from"]["checkpoint"] == fingerprint(RunPaths(run).checkpoint)
    assert analysis["derived_from"] == {"checkpoint": fingerprint(RunPaths(run).checkpoint),
                                        "capture": fingerprint(RunPaths(run).capture)}
    assert str(chain_status(run)) == "ok"
    assert "analysis   ok " in _ls(run.parent, capsys)
    _baseline(run, tmp_path, capsys)
    code, out = _check(run, tmp_path, capsys)
    assert code == 0, out.err
    assert [r.chain.state for r in list_runs(run.parent, confine=True).ok] == ["ok"]


@SLOW
def test_recapture_without_reanalysis_is_stale_in_every_reader(run, tmp_path, capsys):
    _baseline(run, tmp_path, capsys)
    capture_run(run, CaptureOptions(probes=6, text_probes=2, max_len=32, full_maps=1, progress=False))  # issue: 64 → 900
    chain = chain_status(run)
    assert chain.state == "stale" and "analysis.json is older than" in chain.reason and "analyze" in chain.reason

    out = _ls(run.parent, capsys)
    assert " STALE " in out and f"r: STALE: {run / 'analysis.json'} is older than {run / 'capture'}" in out

    code, out = _check(run, tmp_path, capsys)
    assert code == 2 and out.out == "" and len(out.err.strip().splitlines()) == 1
    assert "STALE" in out.err and "re-run `karma-probe analyze`" in out.err

    assert main(["report", str(run), "-o", str(tmp_path / "r.pdf")]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "STALE" in err

    from karma_probe.dashboard import server as dashboard

    from karma_probe.report import pdf as report

    listing = dashboard.listing(run.parent.resolve())  # the dashboard's cached loader
    assert [(r.name, r.chain.state) for r in listing.ok] == [("r", "stale")] and not listing.broken
    written = report.write_report([load_run(run)], tmp_path / "direct.pdf")
    assert written.pages[0] == report.UNTRUSTED

    analyze_run(run, metrics=METRICS, threads=1)  # re-analysis: fresh again
    assert chain_status(run).state == "ok"


@SLOW
@pytest.mark.parametrize("damage", ["truncate stats", "delete hidden"])
def test_a_damaged_capture_is_broken_and_check_refuses_the_old_analysis(run, tmp_path, capsys, damage):
    _baseline(run, tmp_path, capsys)
    paths = RunPaths(run)
    if damage == "truncate stats":
        f = paths.capture / "stats.safetensors"
        f.write_bytes(f.read_bytes()[:-100])
        assert safetensors_problem(f).startswith("truncated")
    else:
        (paths.capture / "hidden.safetensors").unlink()
    chain = chain_status(run)
    assert chain.state == "broken", chain
    assert ("stats.safetensors: truncated" if damage == "truncate stats" else "hidden.safetensors: missing") in chain.reason

    code, out = _check(run, tmp_path, capsys)  # the issue: 19 checks passed on the old analysis
    assert code == 2 and "BROKEN" in out.err and "PASS" not in out.out
    assert " BROKEN " in _ls(run.parent, capsys)
    listing = list_runs(run.parent, confine=True)  # the dashboard's listing: not shown as "ok"
    assert not listing.ok and "BROKEN" in listing.broken[0].reason


@SLOW
def test_a_rewritten_checkpoint_makes_capture_and_analysis_stale(run, tmp_path, capsys):
    state = RunPaths(run).state  # the checkpoint rewritten in place (as by a longer training)
    state.write_text(state.read_text().replace('"step": 2', '"step": 3'))
    chain = chain_status(run)
    assert chain.state == "stale"
    assert f"{RunPaths(run).capture} is older than {RunPaths(run).checkpoint}" in chain.reason
    assert f"{RunPaths(run).analysis} is older than {RunPaths(run).checkpoint}" in chain.reason
    _baseline_refused = main(["check", str(run), "--baseline", str(tmp_path / "b.json"), "--update-baseline"])
    assert _baseline_refused == 2 and "STALE" in capsys.readouterr().err  # no baseline from stale numbers


@SLOW
def test_runs_without_fingerprints_are_unverified_not_stale(run, tmp_path, capsys):
    paths = RunPaths(run)
    for f in (paths.manifest, paths.analysis):
        obj = json.loads(f.read_text())
        del obj["derived_from"]
        f.write_text(json.dumps(obj))
    chain = chain_status(run)
    assert chain.state == "unverified" and chain.trusted and "older karma_probe" in chain.reason
    out = _ls(run.parent, capsys)
    assert " unverified " in out and "unverified (r): written before" in out
    _baseline(run, tmp_path, capsys)
    assert _check(run, tmp_path, capsys)[0] == 0


def test_safetensors_header_check_on_hand_made_files(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    f = tmp_path / "a.safetensors"
    save_file({"x": np.arange(10, dtype=np.float32)}, str(f))
    assert safetensors_problem(f) is None
    f.write_bytes(f.read_bytes() + b"\0")
    assert safetensors_problem(f).startswith("has trailing bytes")
    f.write_bytes(b"\xff" * 16)
    assert safetensors_problem(f).startswith("truncated")
    f.write_bytes(b"\x02\0\0\0\0\0\0\0{]")
    assert safetensors_problem(f).startswith("not a safetensors file")
    assert safetensors_problem(tmp_path / "none.safetensors") == "missing"


def test_fingerprint_of_a_large_file_sees_its_size_and_its_sampled_blocks(tmp_path):
    from karma_probe.rundir import chain

    d = tmp_path / "ck"
    d.mkdir()
    big = d / "model.safetensors"
    size = chain.WHOLE * 2
    big.write_bytes(bytes(size))
    before = fingerprint(d)
    data = bytearray(big.read_bytes())
    data[(size - chain.BLOCK) * 7 // (chain.SAMPLES - 1) + 10] = 1  # inside the eighth sampled block
    big.write_bytes(bytes(data))
    changed = fingerprint(d)
    assert changed != before
    big.write_bytes(bytes(data) + b"\0")  # a different size
    assert fingerprint(d) != changed
    whole = fingerprint(d)
    (d / ".model.safetensors.tmp").write_bytes(b"in progress")  # atomic writes in progress do not count
    assert fingerprint(d) == whole and fingerprint(tmp_path / "none") is None


def test_shards_of_different_checkpoints_are_not_merged():
    from karma_probe.capture.writer import merge_captures
    from karma_probe.rundir.capture import Capture
    from karma_probe.core.errors import BadInput

    model = {"layers": 2, "heads": 2}
    a = Capture({"model": model, "derived_from": {"checkpoint": "aaaa"}}, path="runs/r/capture-0")
    b = Capture({"model": model, "derived_from": {"checkpoint": "bbbb"}}, path="runs/r/capture-1")
    with pytest.raises(BadInput, match="cannot merge captures of different checkpoints"):
        merge_captures([a, b])
