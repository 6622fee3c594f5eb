"""karma-probe study: one report from runs of several training regimes (workflows.regimes)."""

from __future__ import annotations

import json

import pytest
from fakeruns import make_run

from karma_probe.core.errors import BadInput
from karma_probe.report import figures as F
from karma_probe.report import study
from karma_probe.report.results import load_run
from karma_probe.workflows import regimes


def _study(root, sink_reversed_in_full: bool = True):
    """Action-only and KARMA, seeds 0-1, in two regimes (top 2 layers, every layer), each regime with
    its step-0 reference, and one untouched reference whose config names no regime. In the
    every-layer regime KARMA's sink_mass is planted above action-only's, so the claim "action-only
    has more sink mass" holds in the top-2 regime and is reversed in the other."""
    dirs = []
    for k in (2, 0):
        for seed in (0, 1):
            for cond in ("action", "karma"):
                summary = ({"sink_mass": 0.2 + 0.01 * seed} if cond == "action" else {"sink_mass": 0.6 + 0.01 * seed}) \
                    if k == 0 and sink_reversed_in_full else None
                dirs.append(make_run(root, f"{cond}-L{k}-s{seed}", cond, seed=seed, users=40, n_items=400,
                                     train={"train_layers": k}, summary=summary))
        dirs.append(make_run(root, f"step0-L{k}", "base", trajectory=False, users=40, n_items=400,
                             train={"train_layers": k}, reference="step 0"))
    dirs.append(make_run(root, "untouched", "base", trajectory=False, users=40, n_items=400, reference="untouched"))
    return dirs


def _claim(entries, metric):
    return next(e for e in entries if e["metric"] == metric)


def test_split_places_each_run_in_its_regime_and_an_unplaced_reference_in_every_one(tmp_path):
    runs = [load_run(d) for d in _study(tmp_path)]
    split = study.split(runs)
    assert list(split) == [2, 0]
    names = {k: sorted(r.name for r in rs) for k, rs in split.items()}
    assert names[2] == sorted(["action-L2-s0", "karma-L2-s0", "action-L2-s1", "karma-L2-s1", "step0-L2", "untouched"])
    assert names[0] == sorted(["action-L0-s0", "karma-L0-s0", "action-L0-s1", "karma-L0-s1", "step0-L0", "untouched"])
    assert [study.regime_name(k) for k in (0, 1, 8)] == ["every layer", "top 1 layer", "top 8 layers"]


def test_a_trained_run_without_a_regime_or_no_trained_run_is_refused(tmp_path):
    plain = load_run(make_run(tmp_path, "action-s0", "action"))  # fakeruns writes no train_layers by default
    with pytest.raises(BadInput, match="train_layers"):
        study.split([plain])
    ref = load_run(make_run(tmp_path, "untouched", "base", reference="untouched"))
    with pytest.raises(BadInput, match="no trained run"):
        study.split([ref])


def test_write_study_gives_each_regime_its_own_verdict(tmp_path, capsys):
    out = tmp_path / "report"
    top = regimes.write_study(_study(tmp_path / "runs"), out)
    assert top["schema"] == regimes.SCHEMA and list(top["regimes"]) == ["top 2 layers", "every layer"]
    top2, full = top["regimes"]["top 2 layers"], top["regimes"]["every layer"]
    assert top2["regime"] == {"name": "top 2 layers", "train_layers": 2, "dir": "top2"}
    assert sorted(top2["runs"]) == sorted(["action-L2-s0", "karma-L2-s0", "action-L2-s1", "karma-L2-s1",
                                          "step0-L2", "untouched"])
    # the planted reversal: sink_mass holds with the top 2 layers trained, is reversed with every layer
    assert _claim(top2["verdict"], "sink_mass")["effect"] > 0 and _claim(top2["verdict"], "sink_mass")["holds"]
    assert _claim(full["verdict"], "sink_mass")["effect"] == pytest.approx(-0.4)
    assert _claim(full["verdict"], "sink_mass")["status"].startswith("does not hold")
    # each regime is its own Holm family
    assert {e["holm"]["family"] for e in full["verdict"]} == {"action vs karma"}
    assert {e["holm"]["m"] for e in full["verdict"]} == {len(full["verdict"])}
    for slug in ("top2", "full"):  # each regime's reproduce-style report
        on_disk = json.loads((out / slug / "summary.json").read_text())
        assert on_disk["verdict"] == top["regimes"]["top 2 layers" if slug == "top2" else "every layer"]["verdict"]
        assert (out / slug / "report.pdf").stat().st_size > 0 and (out / slug / "summary.md").is_file()
    assert json.loads((out / "summary.json").read_text())["regimes"]["every layer"]["verdict"] == full["verdict"]
    assert {"claims_forest.png", "trajectory_sink_mass.png"} <= set(top["figures"])
    assert all((out / f).is_file() for f in top["figures"])
    md = (out / "summary.md").read_text()
    assert "## top 2 layers (`top2/`)" in md and "## every layer (`full/`)" in md
    assert top["report"]["pages"][0].startswith("Verdict") and "by training regime" in top["report"]["pages"][0]
    assert sum(p.startswith("Claims: action-only vs KARMA (") for p in top["report"]["pages"]) == 2
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".report.")]  # the temporary folder is gone


def test_the_combined_figures_keep_each_regime_apart():
    entries = {"top 8 layers": [{"metric": "sink_mass", "claim": "action-only higher than karma", "effect": 0.1,
                                 "ci_low": 0.05, "ci_high": 0.15, "status": "holds"}],
               "every layer": [{"metric": "sink_mass", "claim": "action-only higher than karma", "effect": -0.1,
                                "ci_low": -0.15, "ci_high": -0.05, "status": "does not hold"}]}
    spec = F.claims_forest_regimes(entries)
    assert [r.group.split(" · ")[0] for r in spec.rows] == ["top 8 layers", "every layer"]
    assert [r.verdict for r in spec.rows] == ["holds", "does not hold"]
    row = {"step": 10, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 3}
    traj = {"conditions": {"action": {"sink_mass": [row]}, "karma": {"sink_mass": [row | {"mean": 0.3}]}}}
    spec = F.regime_trajectory({"top 8 layers": traj, "every layer": traj}, "sink_mass",
                               {"top 8 layers": (0.45, "step 0"), "every layer": (None, "")}, higher_is_better=False)
    names = [s.name for s in spec.series]
    assert names == ["action · top 8 layers", "karma · top 8 layers", "action · every layer", "karma · every layer",
                     "step 0 · top 8 layers"]
    looks = {s.name: s.look for s in spec.series}
    # a condition keeps its hue across regimes; the regime is the line style
    assert looks["action · top 8 layers"].colour == looks["action · every layer"].colour
    assert looks["action · top 8 layers"].dash != looks["action · every layer"].dash
    assert looks["action · top 8 layers"].colour != looks["karma · top 8 layers"].colour


def _quick_pdfs(monkeypatch):
    """Each regime's diagnostic PDF as a stub (the real one is drawn in the test above): these
    tests are about what happens around it."""
    from karma_probe.report import pdf

    def stub(runs, out, **k):
        out.write_bytes(b"%PDF-stub")
        return pdf.Written(path=out, pages=("stub",))

    monkeypatch.setattr(pdf, "write_report", stub)


def test_a_failure_while_writing_leaves_no_report_and_no_temporary_folder(tmp_path, monkeypatch):
    from karma_probe.report import pdf

    _quick_pdfs(monkeypatch)
    dirs = _study(tmp_path / "runs")

    def boom(*a, **k):  # after both regimes' folders were written
        raise RuntimeError("disk full")

    monkeypatch.setattr(pdf, "write_study_report", boom)
    with pytest.raises(RuntimeError):
        regimes.write_study(dirs, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_cli_study_and_its_bad_input(tmp_path, capsys, monkeypatch):
    from karma_probe.cli import main

    _quick_pdfs(monkeypatch)

    dirs = [str(d) for d in _study(tmp_path / "runs")]
    assert main(["study", *dirs, "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert "top 2 layers: 6 runs" in said and "every layer: 6 runs" in said and "claims hold after Holm" in said
    assert main(["study", *dirs, "--out", str(tmp_path / "out2"), "--calibration", str(tmp_path / "nope.json")]) == 2
    assert main(["study", str(tmp_path / "runs" / "untouched"), "--out", str(tmp_path / "out3")]) == 2
    err = capsys.readouterr().err
    assert "no trained run" in err and not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()
