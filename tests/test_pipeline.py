"""The tiny study end to end: train both conditions, capture, analyze, report, and the CI gate."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_study_writes_summary_report_and_figures(tiny_study):
    root, report = tiny_study
    summary = json.loads((report / "summary.json").read_text())
    # the two references, each named for what it is: the runs' model at step 0 and the untouched backbone
    assert set(summary["table"]) == {"action", "karma", "step 0", "untouched"}
    assert summary["runs"]["tiny-step0"]["steps"] == 0 and summary["runs"]["tiny-untouched"]["steps"] == 0
    assert summary["runs"]["tiny-karma-s0"]["steps"] > 0
    assert (report / "summary.md").read_text().startswith("# Study: preset tiny")
    for cond in ("action", "karma"):
        row = summary["table"][cond]
        for metric in ("sink_mass", "key_concentration", "erank", "probe_genre_f1", "probe_decode_acc", "fact_acc", "hr@10"):
            assert row[metric]["n"] == 1 and row[metric]["mean"] is not None, (cond, metric)
    # trained runs learned to retrieve: test HR@10 clearly above the random ranker (~0.0064 here)
    for cond in ("action", "karma"):
        metrics = json.loads((root / f"tiny-{cond}-s0" / "metrics.json").read_text())
        assert metrics["test"]["hr@10"] > 2 * metrics["random"]["hr@10"], (cond, metrics)
    assert (report / "report.pdf").stat().st_size > 10_000 and len(summary["report"]["pages"]) > 5
    assert "sink_mass_by_layer.png" in summary["report"]["figures"]
    assert summary["verdict"], "action vs karma claims are evaluated"


def test_ci_gate_against_committed_baseline(tiny_study, tmp_path):
    root, _ = tiny_study
    junit = tmp_path / "junit.xml"
    r = subprocess.run([sys.executable, "-m", "karma_probe", "check", str(root / "tiny-karma-s0"),
                        "--baseline", str(REPO / "reports" / "baselines" / "tiny.json"), "--junit", str(junit)],
                       capture_output=True, text=True)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<testsuite" in junit.read_text()


def test_rerun_skips_finished_stages(tiny_study):
    """Started again, the study only re-reads what is there (resumability of the whole job)."""
    from karma_probe.workflows.reproduce import Plan, reproduce

    root, report = tiny_study
    before = (root / "tiny-karma-s0" / "analysis.json").stat().st_mtime
    first = json.loads((report / "summary.json").read_text())["wall_time_s"]["stages"]
    summary = reproduce(Plan(preset="tiny", runs_root=root, report_dir=report), progress=False)
    assert (root / "tiny-karma-s0" / "analysis.json").stat().st_mtime == before
    stages = summary["wall_time_s"]["stages"]
    # a skipped stage keeps the time it took when it ran, not the ~0 s of the skip
    for stage in ("train tiny-karma-s0", "capture tiny-step0", "capture tiny-untouched", "analyze tiny-action-s0"):
        assert stages[stage] == first[stage] > 0, stage
