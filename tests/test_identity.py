"""Run identity (issue 28): one run given twice is refused, and only runs of one model, preset and
condition pool as seeds (results.group_runs, the one grouping every reader uses)."""

import json
import shutil

import pytest

from fakeruns import make_run
from karma_probe.cli import main
from karma_probe.core.errors import BadInput
from karma_probe.report import study
from karma_probe.report.results import distinct, group_runs, list_runs, load_run


def _set_model(run, model, preset="tiny"):
    f = run / "config.json"
    config = json.loads(f.read_text())
    config["train"]["model"], config["preset"] = model, preset
    f.write_text(json.dumps(config))
    return run


@pytest.fixture
def karma(tmp_path):
    return make_run(tmp_path / "runs", "karma-s0", "karma")


@pytest.mark.parametrize("second", ["same", "slash", "dot", "symlink", "copy"])
def test_report_refuses_one_run_given_twice(karma, tmp_path, capsys, second, monkeypatch):
    """The issue: `report R R` (also R ./R/, a symlink to R) reported "n = 2 … ± 0" and exited 0."""
    monkeypatch.chdir(karma.parent)
    other = {"same": "karma-s0", "slash": "./karma-s0/", "dot": f"{karma.parent}/../runs/karma-s0"}.get(second)
    if second == "symlink":
        (tmp_path / "link").symlink_to(karma)
        other = str(tmp_path / "link")
    elif second == "copy":
        shutil.copytree(karma, tmp_path / "copied")  # cp -r: another directory, the same training
        other = str(tmp_path / "copied")
    assert main(["report", "karma-s0", other, "-o", str(tmp_path / "r.pdf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give each run once" in err
    assert ("a copy of karma-s0" if second == "copy" else "the same run as karma-s0") in err
    assert not (tmp_path / "r.pdf").exists()


def test_check_refuses_a_run_against_itself_and_a_baseline_from_copies(karma, tmp_path, capsys):
    assert main(["check", str(karma), "--against", f"{karma}/", "--expect", "sink_mass<="]) == 2
    assert "the same run as" in capsys.readouterr().err
    shutil.copytree(karma, tmp_path / "copied")
    assert main(["check", str(karma), str(tmp_path / "copied"), "--baseline", str(tmp_path / "b.json"),
                 "--update-baseline"]) == 2
    assert "a copy of" in capsys.readouterr().err and not (tmp_path / "b.json").exists()


def test_a_listing_counts_symlinks_and_copies_of_a_run_once(karma, capsys):
    root = karma.parent
    (root / "karma-link").symlink_to(karma)
    shutil.copytree(karma, root / "karma-copy")
    make_run(root, "karma-s1", "karma", seed=1)
    listing = list_runs(root, confine=True)  # the dashboard's listing: was "KARMA (n=4)"
    assert sorted(r.name for r in listing.ok) == ["karma-copy", "karma-s1"]  # sorted: the copy comes first
    assert sorted(b.name for b in listing.broken) == ["karma-link", "karma-s0"]
    assert all("the same run as karma-copy" in b.reason for b in listing.broken)
    header, _ = study.condition_rows(list(listing.ok))
    assert header[2:] == ["KARMA (n=2)"]


def test_only_one_model_preset_and_condition_pool_as_seeds(tmp_path):
    root = tmp_path / "runs"
    a0 = load_run(make_run(root, "karma-s0", "karma", seed=0))
    a1 = load_run(make_run(root, "karma-s1", "karma", seed=1))
    mine = load_run(_set_model(make_run(root, "base-mine", "base"), "/models/mine", preset=None))
    theirs = load_run(_set_model(make_run(root, "base-theirs", "base", seed=1), "/models/theirs", preset=None))
    other_preset = load_run(_set_model(make_run(root, "karma-x", "karma", seed=2), "tiny", preset="smollm2"))
    groups = group_runs([a0, a1, mine, theirs, other_preset])
    assert {k: [r.name for r in v] for k, v in groups.items()} == {
        "karma (preset tiny)": ["karma-s0", "karma-s1"], "base (/models/mine)": ["base-mine"],
        "base (/models/theirs)": ["base-theirs"], "karma (preset smollm2)": ["karma-x"]}
    assert study.by_condition([a0, a1, mine, theirs, other_preset]) == groups  # the study's grouping is this one
    # two different user models: not seeds of one "base (untouched)" (the report), no study
    assert not study.is_study([mine, theirs]) and study.representatives([mine, theirs]) == [mine, theirs]
    header, _ = study.condition_rows([mine, theirs])
    assert header[2:] == ["base (/models/mine) (n=1)", "base (/models/theirs) (n=1)"]
    # one model: one group named by its condition alone, as before
    assert list(group_runs([a0, a1])) == ["karma"]


def test_distinct_keeps_different_runs(tmp_path):
    runs = [load_run(make_run(tmp_path, f"karma-s{s}", "karma", seed=s)) for s in (0, 1)]
    assert distinct(runs) == runs
    with pytest.raises(BadInput, match="the same run as"):
        distinct(runs + [load_run(tmp_path / "karma-s0")])
