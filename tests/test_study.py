"""The study's verdict with confidence intervals, on fake runs whose answer is known."""

import json
from pathlib import Path
import math

import numpy as np
import pytest
from fakeruns import make_run

from karma_probe.analyzers.catalogue import format_value
from karma_probe.report import study
from karma_probe.report.results import load_run
from karma_probe.rundir.layout import CAPTURE_SCHEMA

CONDITIONS = ("action", "karma")


def _runs(root, seeds=(0,), conditions=CONDITIONS, **kw):
    return [load_run(make_run(root, f"{c}-s{s}", c, seed=s, **kw)) for s in seeds for c in conditions]


def _claim(verdict, metric):
    return next(v for v in verdict if v["metric"] == metric)


VERDICT_KEYS = {"metric", "claim", "action", "karma", "effect", "ci_low", "ci_high", "p", "holds", "status", "basis",
                "seeds", "holm", "detectable", "detectable_80", "detectable_from"}


def test_one_seed_retrieval_claim_gets_a_paired_user_ci(tmp_path):
    runs = _runs(tmp_path, users=300, n_items=400)
    v = study.verdict(runs)
    assert all(set(e) == VERDICT_KEYS for e in v)
    mrr = _claim(v, "mrr")  # fakeruns: karma ranks every user's target higher than action-only does
    action, karma = runs
    assert mrr["effect"] == pytest.approx(karma.interval("mrr").estimate - action.interval("mrr").estimate)
    assert 0 < mrr["ci_low"] < mrr["effect"] < mrr["ci_high"]
    assert mrr["holds"] is True and mrr["status"] == "holds (one seed)" and mrr["seeds"] == 1
    assert "paired bootstrap over 300 users" in mrr["basis"]


def test_one_seed_probe_claim_combines_the_two_runs_probe_intervals(tmp_path):
    runs = _runs(tmp_path, users=50, n_items=400, interval_half=0.05)
    sink = _claim(study.verdict(runs), "sink_mass")  # claim: action-only higher
    a, k = (r.summary["sink_mass"] for r in runs)
    assert sink["effect"] == pytest.approx(a - k)
    half = math.hypot(0.05, 0.05)
    assert (sink["ci_low"], sink["ci_high"]) == pytest.approx((a - k - half, a - k + half))
    assert sink["holds"] == (a - k - half > 0)
    assert "probe bootstraps" in sink["basis"]


def test_a_gap_inside_the_probe_noise_is_not_called_holds(tmp_path):
    # issue 13: a 0.8 % sink_mass gap was called "holds (one seed)"; with its probe CIs it is noise
    runs = [load_run(make_run(tmp_path, c, c, users=20, n_items=100, interval_half=0.01,
                              summary={"sink_mass": v})) for c, v in (("action", 0.5039), ("karma", 0.5001))]
    sink = _claim(study.verdict(runs), "sink_mass")
    assert sink["effect"] == pytest.approx(0.0038)
    assert sink["ci_low"] < 0 < sink["ci_high"]
    assert sink["holds"] is False and sink["status"] == "within noise (one seed)"


def test_lower_claims_are_signed_so_positive_is_the_claimed_direction(tmp_path):
    runs = _runs(tmp_path, users=50, n_items=400, interval_half=0.001)
    erank = _claim(study.verdict(runs), "erank")  # claim: action-only lower; fakeruns: karma's erank higher
    action, karma = runs
    assert erank["effect"] == pytest.approx(karma.summary["erank"] - action.summary["erank"]) and erank["effect"] > 0
    assert erank["ci_low"] <= erank["effect"] <= erank["ci_high"] and erank["holds"]


def test_a_claim_going_the_other_way_does_not_hold(tmp_path):
    runs = [load_run(make_run(tmp_path, c, c, users=20, n_items=100, interval_half=0.001,
                              summary={"sink_mass": v})) for c, v in (("action", 0.1), ("karma", 0.3))]
    sink = _claim(study.verdict(runs), "sink_mass")
    assert sink["ci_high"] < 0 and sink["status"] == "does not hold (one seed)" and not sink["holds"]


def test_by_construction_claims_are_dropped_and_gains_are_claims(tmp_path):
    metrics = {e["metric"] for e in study.verdict(_runs(tmp_path, users=30, n_items=100))}
    assert not metrics & {"recon_token_acc", "recon_exact"}
    assert {"recon_token_acc_gain", "probe_decode_acc_gain", "probe_genre_f1_gain", "aniso_cos", "erank",
            "uniformity"} <= metrics


def test_without_any_interval_there_is_no_ci_and_no_holds(tmp_path):
    runs = _runs(tmp_path)  # runs from before issue 13: no ranks, no intervals
    v = study.verdict(runs)
    assert v and all(e["ci_low"] is None and e["holds"] is False for e in v)
    assert _claim(v, "sink_mass")["status"] == "no CI (one seed)"


def test_several_seeds_use_a_t_interval_over_paired_seed_differences(tmp_path):
    runs = _runs(tmp_path, seeds=(0, 1, 2), users=40, n_items=400)
    hr = _claim(study.verdict(runs), "hr@200")
    by = {(r.condition, r.seed): r.summary["hr@200"] for r in runs}
    diffs = [by["karma", s] - by["action", s] for s in (0, 1, 2)]
    half = 4.3027 * np.std(diffs, ddof=1) / math.sqrt(3)
    assert hr["effect"] == pytest.approx(np.mean(diffs))
    assert (hr["ci_low"], hr["ci_high"]) == pytest.approx((np.mean(diffs) - half, np.mean(diffs) + half), rel=1e-3)
    assert hr["seeds"] == 3 and "(one seed)" not in hr["status"] and "t-interval over 3 seeds" in hr["basis"]


def test_seeds_that_agree_exactly_fall_back_to_the_noise_within_runs(tmp_path):
    # the SmolLM2 study: two seed pairs both 5/943 apart on hr@10 gave a zero-width t-interval
    # that called the gap significant; the fallback is the within-run intervals, combined
    values = {("action", 0): 0.30, ("karma", 0): 0.20, ("action", 1): 0.40, ("karma", 1): 0.30}
    runs = [load_run(make_run(tmp_path, f"{c}-s{s}", c, seed=s, users=20, n_items=100, interval_half=0.15,
                              summary={"sink_mass": v})) for (c, s), v in values.items()]
    sink = _claim(study.verdict(runs), "sink_mass")
    half = math.hypot(math.hypot(0.15, 0.15), math.hypot(0.15, 0.15)) / 2  # each pair's CI, then their mean
    assert sink["effect"] == pytest.approx(0.1) and sink["seeds"] == 2
    assert (sink["ci_low"], sink["ci_high"]) == pytest.approx((0.1 - half, 0.1 + half))
    assert sink["status"] == "within noise" and "agree exactly" in sink["basis"]
    assert study.seed_interval([0.1, 0.1 + 1e-17]) is None
    assert study.seed_interval([0.1, 0.2]).half_width > 0


def test_seeds_pair_by_seed_not_by_order(tmp_path):
    runs = _runs(tmp_path / "a", seeds=(0, 1), users=20, n_items=100)
    shuffled = [runs[3], runs[0], runs[1], runs[2]]  # karma-s1 first
    assert study.verdict(shuffled) == study.verdict(runs)


def test_table_cells_carry_mean_and_ci(tmp_path):
    runs = _runs(tmp_path, seeds=(0, 1, 2), users=40, n_items=400)
    t = study.table(runs, ["sink_mass", "hr@10"])
    c = t["karma"]["sink_mass"]
    vals = [r.summary["sink_mass"] for r in runs if r.condition == "karma"]
    assert c["n"] == 3 and c["mean"] == pytest.approx(np.mean(vals))
    assert c["half_width"] == pytest.approx(4.3027 * np.std(vals, ddof=1) / math.sqrt(3), rel=1e-3)
    assert study.mean_ci(c).count("±") == 1
    one = study.table(_runs(tmp_path / "one", users=40, n_items=400), ["hr@10", "lm_ppl"])["karma"]
    assert one["hr@10"]["ci_low"] < one["hr@10"]["mean"] < one["hr@10"]["ci_high"]
    assert "users" in one["hr@10"]["ci_method"]
    assert one["lm_ppl"]["ci_low"] is None and study.mean_ci(one["lm_ppl"]).count("±") == 0


def test_retrieval_vs_baselines(tmp_path):
    out = study.vs_baselines(_runs(tmp_path, users=300, n_items=400))
    # fakeruns: popularity ranks at 1.6x the shared difficulty, markov at 0.9x, karma ~0.8x, action ~1.3x
    assert out["karma"]["popularity"]["mrr"]["status"] == "better (one seed)"
    assert out["action"]["markov"]["mrr"]["status"] == "worse (one seed)"
    e = out["karma"]["popularity"]["hr@10"]
    assert e["diff"] == pytest.approx(e["run"] - e["baseline"]) and e["ci_low"] <= e["diff"] <= e["ci_high"]
    assert study.vs_baselines(_runs(tmp_path / "old")) == {}  # no baselines in metrics.json


def test_retrieval_vs_a_fixed_reference_figure(tmp_path):
    ref = {"name": "ref", "label": "R", "source": "elsewhere", "split": "test_all", "metric": "hr@10", "value": 0.05}
    one = study.vs_reference(_runs(tmp_path / "one", users=300, n_items=400), [ref])
    e = one["karma"]["ref"]  # one seed: the bootstrap over users of the test_all ranks, shifted by the figure
    boot = study.stats.rank_metric_ci(load_run(tmp_path / "one" / "karma-s0").ranks("test_all"), "hr@10")
    assert e["run"] == pytest.approx(boot.estimate) and e["diff"] == pytest.approx(boot.estimate - 0.05)
    assert (e["ci_low"], e["ci_high"]) == pytest.approx((boot.low - 0.05, boot.high - 0.05))
    assert e["status"].endswith("(one seed)") and e["seeds"] == 1
    high = study.vs_reference(_runs(tmp_path / "one", users=300, n_items=400), [ref | {"value": 0.9}])
    assert high["karma"]["ref"]["status"] == "worse (one seed)"  # a figure far above every bootstrap draw
    runs = _runs(tmp_path / "three", seeds=(0, 1, 2), users=300, n_items=400)
    e = study.vs_reference(runs, [ref])["action"]["ref"]  # several seeds: t-interval over seeds
    values = [r.metrics["test_all"]["hr@10"] - 0.05 for r in runs if r.condition == "action"]
    ci = study.stats.t_interval(values)
    assert (e["diff"], e["ci_low"], e["ci_high"]) == pytest.approx((ci.estimate, ci.low, ci.high))
    assert e["seeds"] == 3 and "t-interval over 3 seeds" in e["basis"]
    assert study.vs_reference(_runs(tmp_path / "old")) == {}  # no test_all in metrics.json


def test_a_fixed_reference_against_seeds_that_agree_exactly_uses_their_user_bootstraps(tmp_path):
    ref = {"name": "ref", "label": "R", "source": "elsewhere", "split": "test_all", "metric": "hr@10", "value": 0.05}
    for s in (0, 1):
        make_run(tmp_path, f"action-s{s}", "action", seed=s, users=300, n_items=400)
    (tmp_path / "action-s1" / "metrics.json").write_text((tmp_path / "action-s0" / "metrics.json").read_text())
    runs = [load_run(tmp_path / f"action-s{s}") for s in (0, 1)]
    e = study.vs_reference(runs, [ref])["action"]["ref"]
    boot = study.stats.rank_metric_ci(runs[0].ranks("test_all"), "hr@10")
    shifted = study.stats.Interval(boot.estimate - 0.05, boot.low - 0.05, boot.high - 0.05, boot.n, "")
    both = study.stats.mean_of_independent([shifted, shifted], "")
    assert (e["diff"], e["ci_low"], e["ci_high"]) == pytest.approx((both.estimate, both.low, both.high))
    assert e["ci_high"] - e["ci_low"] > 0 and "agree exactly" in e["basis"] and e["seeds"] == 2


def test_stage_seconds_come_from_what_each_run_directory_recorded(tmp_path):
    path = make_run(tmp_path, "karma-s0", "karma", users=20, n_items=400)
    steps = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    metrics = json.loads((path / "metrics.json").read_text()) | {"eval_s": 12.5}
    (path / "metrics.json").write_text(json.dumps(metrics))
    manifest = {"schema": CAPTURE_SCHEMA, "elapsed_s": {"probes": 3.0, "embeddings": 1.5}}  # fakeruns writes none
    (path / "capture" / "manifest.json").write_text(json.dumps(manifest))
    analysis = json.loads((path / "analysis.json").read_text())
    analysis["analyzed"] = {"seconds": {"sink_mass": 2.0, "load_model": 1.0}}
    analysis["trajectory"][0]["seconds"] = {"sink_mass": 4.0, "odd": "n/a"}  # a non-number is ignored
    (path / "analysis.json").write_text(json.dumps(analysis))
    run = load_run(path)
    assert run.analysis.seconds == 7.0
    assert study.stage_seconds([run]) == {"train karma-s0": round(steps[-1]["elapsed_s"], 1),
                                          "evaluate karma-s0": 12.5, "capture karma-s0": 4.5, "analyze karma-s0": 7.0}
    bare = load_run(make_run(tmp_path, "base", "base", capture=False, metrics=False, train_log=False))
    assert study.stage_seconds([bare]) == {}  # nothing recorded: nothing claimed


def _two_seed_summary(tmp_path, monkeypatch):
    """summary.json's content for two seeds of both conditions (fake runs; report and figures stubbed)."""
    from karma_probe.workflows import reproduce as pipeline

    root = tmp_path / "runs"
    dirs = [make_run(root, f"tiny-{c}-s{s}", c, seed=s, users=40, n_items=400, probes=1, layers=2, heads=2)
            for s in (0, 1) for c in CONDITIONS]
    monkeypatch.setattr("karma_probe.report.pdf.write_report",
                        lambda runs, out: type("W", (), {"path": out, "pages": ("Verdict",)})())
    monkeypatch.setattr(pipeline, "_write_figures", lambda runs, out, *rest: [])
    summary = pipeline.write_outputs(pipeline.Plan(preset="tiny", seeds=(0, 1), report_dir=tmp_path / "rep"), dirs)
    return dirs, summary


def test_write_outputs_summary_json(tmp_path, monkeypatch):
    dirs, summary = _two_seed_summary(tmp_path, monkeypatch)
    json.dumps(summary, allow_nan=False)  # strict JSON: no NaN anywhere
    assert summary["verdict"] and all(set(e) == VERDICT_KEYS for e in summary["verdict"])
    assert {"ci_low", "ci_high", "half_width"} <= set(summary["table"]["karma"]["sink_mass"])
    assert "popularity" in summary["retrieval_vs_baselines"]["karma"]
    assert summary["retrieval_vs_reference"]["karma"]["sasrec"]["split"] == "test_all"
    assert "probe_decode_acc_gain" in summary["table"]["karma"]
    assert [r["step"] for r in summary["trajectory"]["claims"]["sink_mass"]] == [10, 20, 30]
    assert {r["steps"] for r in summary["runs"].values()} == {load_run(dirs[0]).config["train"]["steps"]}


def test_markdown_rows_are_mean_plus_minus_half_width_and_only_holds_is_bold(tmp_path):
    runs = _runs(tmp_path, seeds=(0, 1), users=40, n_items=400)
    summary = {"table": study.table(runs, ["sink_mass", "hr@10"]), "verdict": study.verdict(runs),
               "higher_is_better": {"sink_mass": False, "hr@10": True}}
    md = study.markdown(summary)
    row = next(line for line in md.splitlines() if line.startswith("| `sink_mass`"))
    assert row.startswith("| `sink_mass` | lower | ") and row.count("±") == 2
    assert study.mean_ci(summary["table"]["karma"]["sink_mass"]) in row
    for e in summary["verdict"]:  # bold: holds after Holm's correction; the raw word beside it where it differs
        line = next(line for line in md.splitlines() if line.startswith(f"- `{e['metric']}`"))
        assert ("**" in line) == e["holm"]["holds"] and "95 % CI [" in line and "(Holm" in line
        assert (f"raw {e['status']}" in line) == (e["status"] != e["holm"]["status"])
    assert any(e["holds"] and not e["holm"]["holds"] for e in summary["verdict"])  # the case this checks
    table = study.markdown_verdict(summary)
    assert "detectable at n = 2 (80 % power)" in table.splitlines()[0]
    for e in summary["verdict"]:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{e['metric']}` "))
        assert study.detectable_text(e) in row and format_value(e["holm"]["ci_low"]) in row, row
        assert row.endswith(f"| {study.holm_detectable_text(e)} |"), row
        assert f"{e['holm']['level'] * 100:.2f} %" in row and e["status"] in row


def test_trajectory_means_and_paired_effects_over_seeds(tmp_path):
    """Per condition and step: the mean over seeds with its t-interval; per claim and step: the
    signed action − karma effect paired by seed (fakeruns scale each step's values by 0.5 + s/60)."""
    from karma_probe.report.stats import t_interval

    runs = _runs(tmp_path, seeds=(0, 1, 2))
    traj = study.trajectory(runs, metrics=("sink_mass", "erank", "lm_ppl_not_there"))
    by = {(r.condition, r.seed): r for r in runs}

    def at(r, s, m):
        return next(t["summary"][m] for t in r.analysis.trajectory if t["step"] == s)

    rows = traj["conditions"]["action"]["sink_mass"]
    assert [r["step"] for r in rows] == [10, 20, 30] and all(r["n"] == 3 for r in rows)
    vals = [at(by["action", s], 20, "sink_mass") for s in (0, 1, 2)]
    ci = t_interval(vals)
    assert (rows[1]["mean"], rows[1]["ci_low"], rows[1]["ci_high"]) == pytest.approx((np.mean(vals), ci.low, ci.high))
    assert "lm_ppl_not_there" not in traj["conditions"]["action"]
    # erank's claim is "action-only lower": the effect is karma − action
    diffs = [at(by["karma", s], 30, "erank") - at(by["action", s], 30, "erank") for s in (0, 1, 2)]
    last = traj["claims"]["erank"][-1]
    assert last["step"] == 30 and last["seeds"] == 3
    assert (last["effect"], last["ci_low"]) == pytest.approx((np.mean(diffs), t_interval(diffs).low))
    # one seed: means without CIs; no trajectories at all: empty
    one = study.trajectory(_runs(tmp_path / "one"), metrics=("sink_mass",))
    assert one["conditions"]["karma"]["sink_mass"][0]["ci_low"] is None
    assert study.trajectory(_runs(tmp_path / "none", trajectory=False)) == {"conditions": {}, "claims": {}}


def test_trajectory_figures_one_line_per_condition_and_the_reference_named_for_what_it_is(tmp_path):
    import json

    from karma_probe.report import figures as F
    from karma_probe.workflows import reproduce as pipeline

    base = load_run(make_run(tmp_path, "base", "base", trajectory=False))
    untouched_dir = make_run(tmp_path, "untouched", "base", trajectory=False)
    meta = json.loads((untouched_dir / "config.json").read_text())
    (untouched_dir / "config.json").write_text(json.dumps(meta | {"reference": "untouched"}))
    step0_dir = make_run(tmp_path, "step0", "base", seed=1, trajectory=False)
    meta = json.loads((step0_dir / "config.json").read_text())
    (step0_dir / "config.json").write_text(json.dumps(meta | {"reference": "step 0"}))
    untouched, step0 = load_run(untouched_dir), load_run(step0_dir)
    assert study.trajectory_reference([untouched, step0]) == (step0, "step 0")  # the runs' own inputs first
    assert study.trajectory_reference([base])[1] == "base"  # a reference that does not say what it is
    runs = _runs(tmp_path, seeds=(0, 1)) + [base]
    traj = study.trajectory(runs)
    spec = F.condition_trajectory(traj, "sink_mass", base=base.summary["sink_mass"], higher_is_better=False,
                                  base_name="base")
    assert [s.name for s in spec.series] == ["action", "karma", "base"]
    assert spec.series[-1].dashed and list(spec.series[-1].y) == [base.summary["sink_mass"]] * 2
    assert spec.series[0].low is not None and "lower is better" in spec.note
    written = pipeline._write_figures(runs, tmp_path, traj, {})
    drawn = {n.removeprefix("trajectory_").removesuffix(".png") for n in written if n.startswith("trajectory_")}
    assert "sink_mass" in drawn and drawn <= set(study.TRAJECTORY_METRICS)
    assert drawn == {m for m in study.TRAJECTORY_METRICS if m in traj["conditions"]["action"]}


def test_a_study_draws_its_bar_figures_per_condition_not_per_run(tmp_path, monkeypatch):
    # thirteen runs as thirteen bars had unreadable labels; a study's bars are condition means ± CI
    from karma_probe.report import figures as F
    from karma_probe.workflows import reproduce as pipeline

    drawn = {}
    real = F.to_matplotlib
    monkeypatch.setattr(F, "to_matplotlib", lambda spec, ax=None: drawn.setdefault(spec.title, spec) and real(spec, ax))
    pipeline._write_figures(_runs(tmp_path / "study", seeds=(0, 1), users=30, n_items=100), tmp_path)
    assert list(drawn["fact_acc"].series[0].x) == ["action", "karma"]
    drawn.clear()
    pipeline._write_figures(_runs(tmp_path / "one", users=30, n_items=100), tmp_path)
    assert list(drawn["fact_acc"].series[0].x) == ["action-s0", "karma-s0"]


def test_reproduce_threads_reach_every_stage(tmp_path, monkeypatch):
    """``reproduce --threads N`` sets torch's thread count for training, capture and analysis alike
    (a study left to share a 2-core CPU must not spin two threads in any stage)."""
    import torch

    import karma_probe.analyzers.run as analyze
    import karma_probe.capture.run as capture_run
    import karma_probe.train.loop as train
    from karma_probe.workflows import reproduce as pipeline
    from karma_probe.cli import main

    seen = {}

    def stage(name):
        def fake(*a, **kw):
            seen[name] = (kw.get("threads"), torch.get_num_threads())
            if name == "train":
                out = a[1]
                out.mkdir(parents=True)
                for f in ("metrics.json", "checkpoint/config.json"):
                    (out / f).parent.mkdir(parents=True, exist_ok=True)
                    (out / f).write_text("{}")
            return {}
        return fake

    monkeypatch.setattr(train, "train_run", stage("train"))
    monkeypatch.setattr(capture_run, "capture_run", stage("capture"))
    monkeypatch.setattr(capture_run, "create_base_run", stage("base"))
    monkeypatch.setattr(analyze, "analyze_run", stage("analyze"))
    monkeypatch.setattr(pipeline, "write_outputs", lambda plan, dirs: {})
    before = torch.get_num_threads()
    assert main(["reproduce", "--preset", "tiny", "--conditions", "action", "--runs-root", str(tmp_path),
                 "--threads", "3", "--no-progress"]) == 0  # 3: no machine's default, so the check can fail
    assert seen["train"][0] == 3 and seen["analyze"][0] == 3  # they set (and restore) torch's threads themselves
    assert seen["capture"][1] == 3 and seen["base"][1] == 3
    assert torch.get_num_threads() == before
    assert main(["reproduce", "--threads", "0"]) == 2


def test_two_reproductions_share_the_runs_out(tmp_path, monkeypatch, capsys):
    """A run claimed by another reproduction is skipped (not trained twice); the report then covers
    the runs analyzed so far, and says which ones are still being worked on."""
    import karma_probe.analyzers.run as analyze
    import karma_probe.capture.run as capture_run
    import karma_probe.train.loop as train
    from karma_probe.workflows import reproduce as pipeline

    worked = []
    monkeypatch.setattr(train, "train_run", lambda cfg, out, **kw: worked.append(out.name) or {})
    monkeypatch.setattr(capture_run, "capture_run", lambda out, opts: None)
    monkeypatch.setattr(analyze, "analyze_run",
                        lambda out, **kw: (out / "analysis.json").parent.mkdir(parents=True, exist_ok=True)
                        or (out / "analysis.json").write_text("{}"))
    reported = []
    monkeypatch.setattr(pipeline, "write_outputs", lambda plan, dirs: reported.append([d.name for d in dirs]) or {})
    plan = pipeline.Plan(preset="tiny", conditions=("action", "karma"), runs_root=tmp_path, report_dir=tmp_path / "r",
                         base=False)
    with pipeline.claim(tmp_path / "tiny-karma-s0") as mine:  # "another process" holds KARMA
        assert mine
        with pipeline.claim(tmp_path / "tiny-karma-s0") as again:
            assert again is False  # a second claim on a held run fails, even from the same process
        pipeline.reproduce(plan, progress=False)
    assert worked == ["tiny-action-s0"] and reported == [["tiny-action-s0"]]
    out = capsys.readouterr().out
    assert "skip " in out and "1 run(s) are being worked on by another reproduction (tiny-karma-s0)" in out
    # released (the holder ended): the next reproduction takes it
    worked.clear()
    pipeline.reproduce(plan, progress=False)
    assert worked == ["tiny-action-s0", "tiny-karma-s0"] and reported[-1] == ["tiny-action-s0", "tiny-karma-s0"]


def test_a_run_analyzed_without_its_trajectory_is_analyzed_again_when_the_plan_follows_it(tmp_path, monkeypatch):
    """Study v3's action-only seed 0 was analyzed (final checkpoint only) in the selection step; the
    next step follows action-only's trajectory and must not skip it as "already analyzed"."""
    import json

    import karma_probe.analyzers.run as analyze
    import karma_probe.capture.run as capture_run
    import karma_probe.train.loop as train
    from karma_probe.rundir.analysis import SCHEMA
    from karma_probe.workflows import reproduce as pipeline

    calls = []

    def fake_analyze(out, all_checkpoints=False, **kw):
        calls.append((out.name, all_checkpoints))
        (out / "analysis.json").write_text(json.dumps({"schema": SCHEMA,
                                                       "trajectory": [{"step": 10}] if all_checkpoints else []}))

    monkeypatch.setattr(train, "train_run", lambda cfg, out, **kw: None)
    monkeypatch.setattr(capture_run, "capture_run", lambda out, opts: None)
    monkeypatch.setattr(analyze, "analyze_run", fake_analyze)
    monkeypatch.setattr(pipeline, "write_outputs", lambda plan, dirs: {})
    run = tmp_path / "tiny-action-s0"
    run.mkdir()
    (run / "analysis.json").write_text(json.dumps({"schema": SCHEMA, "summary": {}}))  # fresh: no capture manifest is newer
    plan = pipeline.Plan(preset="tiny", conditions=("action",), runs_root=tmp_path, report_dir=tmp_path / "r", base=False)
    pipeline.reproduce(plan, progress=False)
    assert calls == []  # no trajectory asked for: the analysis stands
    following = pipeline.Plan(**{**plan.__dict__, "trajectory": ("action",)})
    pipeline.reproduce(following, progress=False)
    assert calls == [("tiny-action-s0", True)]
    pipeline.reproduce(following, progress=False)  # now it has one: skipped again
    assert calls == [("tiny-action-s0", True)]


def test_background_argv_drops_its_own_options():
    from karma_probe.commands.reproduce import _without

    argv = ["reproduce", "--preset", "smollm2", "--background", "--log", "a.log", "--threads", "1", "--log=b.log"]
    assert _without(argv, "--background", "--log") == ["reproduce", "--preset", "smollm2", "--threads", "1"]


def test_markdown_retrieval_puts_each_condition_beside_its_nulls(tmp_path):
    runs = _runs(tmp_path, seeds=(0, 1), users=300, n_items=400)
    summary = {"table": study.table(runs, ["hr@10"]), "retrieval_vs_baselines": study.vs_baselines(runs),
               "retrieval_vs_reference": study.vs_reference(runs)}
    lines = study.markdown_retrieval(summary).splitlines()
    assert lines[0].startswith("| condition | test hr@10 | popularity ") and "SASRec (RecBole) 0.136 (test_all hr@10)" in lines[0]
    row = next(line for line in lines if line.startswith("| KARMA |"))
    e = summary["retrieval_vs_baselines"]["karma"]["popularity"]["hr@10"]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == study.mean_ci(summary["table"]["karma"]["hr@10"])
    holm = "" if e["holm"]["status"] == e["status"] else f" (Holm: {e['holm']['status']})"
    assert cells[2].endswith(e["status"] + holm) and f"[{format_value(e['ci_low'])}, {format_value(e['ci_high'])}]" in cells[2]
    ref = summary["retrieval_vs_reference"]["karma"]["sasrec"]
    assert cells[-1].startswith(f"{format_value(ref['run'])}: ") and cells[-1].endswith(ref["status"])


def test_trajectory_follows_the_conditions_named(tmp_path, monkeypatch):
    """``--trajectory action karma`` analyzes every checkpoint of those conditions only; a bare
    ``--trajectory`` follows every condition; a condition not in the study is refused."""
    import karma_probe.analyzers.run as analyze
    import karma_probe.capture.run as capture_run
    import karma_probe.train.loop as train
    from karma_probe.workflows import reproduce as pipeline
    from karma_probe.cli import main

    followed = {}
    monkeypatch.setattr(train, "train_run", lambda cfg, out, **kw: {})
    monkeypatch.setattr(capture_run, "capture_run", lambda out, opts: None)
    monkeypatch.setattr(analyze, "analyze_run", lambda out, **kw: followed.__setitem__(out.name, kw["all_checkpoints"]))
    monkeypatch.setattr(pipeline, "write_outputs", lambda plan, dirs: {})
    study_args = ["reproduce", "--preset", "tiny", "--conditions", "action", "gen", "karma", "--no-base",
                  "--no-progress", "--threads", "1"]
    assert main(study_args + ["--runs-root", str(tmp_path / "a"), "--trajectory", "action", "karma"]) == 0
    assert followed == {"tiny-action-s0": True, "tiny-gen-s0": False, "tiny-karma-s0": True}
    followed.clear()
    assert main(study_args + ["--runs-root", str(tmp_path / "b"), "--trajectory"]) == 0
    assert set(followed.values()) == {True} and len(followed) == 3
    followed.clear()
    assert main(study_args + ["--runs-root", str(tmp_path / "c")]) == 0
    assert set(followed.values()) == {False}
    assert main(study_args + ["--runs-root", str(tmp_path / "d"), "--trajectory", "rec"]) == 2
    assert not (tmp_path / "d").exists()


def test_summary_markdown_quotes_summary_json(tmp_path, monkeypatch):
    _, summary = _two_seed_summary(tmp_path, monkeypatch)
    summary["wall_time_s"] = {"stages": {"train tiny-action-s0": 100.0, "train tiny-action-s1": 200.0,
                                         "analyze tiny-karma-s0": 30.0, "report": 5.0}, "total": 335.0}
    md = study.summary_markdown(summary)
    assert md.startswith("# Study: preset tiny, 4 runs, seeds [0, 1]\n")  # every planned seed is here
    assert summary["seeds_by_condition"] == {c: [0, 1] for c in CONDITIONS}
    summary["seeds_by_condition"]["karma"], summary["planned_seeds"] = [0], [0, 1, 2]  # others still training
    assert study.summary_markdown(summary).startswith("# Study: preset tiny, 4 runs, seeds [0, 1] (planned, not in "
                                                      "this report yet: action seed 2; karma seed 1, 2)\n")
    assert study.markdown(summary) in md and study.markdown_retrieval(summary) in md
    traj = study.markdown_trajectory(summary)
    assert traj in md and traj.splitlines()[0].endswith("| step 10 | step 20 | step 30 |")
    e = summary["trajectory"]["claims"]["sink_mass"][-1]
    row = next(line for line in traj.splitlines() if line.startswith("| `sink_mass` action-only higher |"))
    assert f"[{format_value(e['ci_low'])}, {format_value(e['ci_high'])}]" in row.split("|")[-2]
    assert "| action-only | 2 | 150 | – | – | – |" in md  # mean train seconds of the two action-only runs
    assert "| KARMA | 1 | – | – | – | 30 |" in md and "335 s (0.1 h)" in md


def test_summary_seeds_leave_out_the_references(tmp_path, monkeypatch):
    """The references ("step 0", "untouched": condition base) are no seeds of a condition: with both
    in the report, seeds_by_condition holds the trained groups only and the title names no reference
    as missing; a trained seed not yet there is named."""
    from karma_probe.workflows import reproduce as pipeline

    root = tmp_path / "runs"
    dirs = [make_run(root, f"tiny-{c}-s{s}", c, seed=s, users=40, n_items=400, probes=1, layers=2, heads=2)
            for c, s in (("action", 0), ("action", 1), ("karma", 0))]
    dirs += [make_run(root, f"tiny-{k}", "base", seed=0, users=40, n_items=400, probes=1, layers=2, heads=2,
                      reference=name) for k, name in (("step0", "step 0"), ("untouched", "untouched"))]
    monkeypatch.setattr("karma_probe.report.pdf.write_report",
                        lambda runs, out: type("W", (), {"path": out, "pages": ("Verdict",)})())
    monkeypatch.setattr(pipeline, "_write_figures", lambda runs, out, *rest: [])
    summary = pipeline.write_outputs(pipeline.Plan(preset="tiny", seeds=(0, 1), report_dir=tmp_path / "rep"), dirs)
    assert {"step 0", "untouched"} <= set(summary["conditions"])  # the references are in the report
    assert summary["seeds"] == [0, 1] and summary["seeds_by_condition"] == {"action": [0, 1], "karma": [0]}
    assert study.summary_markdown(summary).startswith(
        "# Study: preset tiny, 5 runs, seeds [0, 1] (planned, not in this report yet: karma seed 1)\n")


def test_ablations_score_each_regularizer_alone_against_action_only(tmp_path):
    runs = _runs(tmp_path, seeds=(0, 1, 2), conditions=("action", "gen", "rec", "karma"), users=40, n_items=400)
    abl = study.ablations(runs)
    assert set(abl) == {"gen", "rec"}
    by = {(r.condition, r.seed): r.summary["sink_mass"] for r in runs}
    diffs = [by["action", s] - by["gen", s] for s in (0, 1, 2)]  # claim: action-only higher
    sink = _claim(abl["gen"], "sink_mass")
    assert sink["claim"] == "action-only higher than gen" and sink["gen"] == pytest.approx(np.mean([by["gen", s] for s in (0, 1, 2)]))
    assert sink["effect"] == pytest.approx(np.mean(diffs)) and sink["seeds"] == 3
    assert {e["metric"] for e in abl["rec"]} == {e["metric"] for e in study.verdict(runs)}
    header, rows = study.ablation_rows(runs)
    assert header[:3] == ["metric", "action-only is", "action-only"] and len(header) == 3 + 3 * 4
    assert header[3::4] == ["gen only", "rec only", "KARMA"]
    row = next(r for r in rows if r[0] == "sink_mass")
    karma = _claim(study.verdict(runs), "sink_mass")
    assert row[1] == "higher" and row[-2] == karma["status"] and row[-3].startswith(format_value(karma["effect"]))
    assert row[-1] == karma["holm"]["status"] and row[6] == sink["holm"]["status"]
    assert sink["holm"]["family"] == "action vs gen" and sink["holm"]["m"] == len(abl["gen"])
    assert row[5] == sink["status"] and f"[{format_value(sink['ci_low'])}, {format_value(sink['ci_high'])}]" in row[4]


def test_no_ablation_table_without_a_one_regularizer_condition(tmp_path):
    runs = _runs(tmp_path, seeds=(0, 1), users=20, n_items=100)
    assert study.ablations(runs) == {} and study.ablation_rows(runs) == ([], [])
    assert study.markdown_ablations({"verdict": study.verdict(runs), "ablations": {}}) == ""
    only_gen = _runs(tmp_path / "g", seeds=(0,), conditions=("gen", "karma"))
    assert study.ablations(only_gen) == {}  # nothing to hold gen against


def test_markdown_ablations_quote_summary_json_and_bold_only_what_holds(tmp_path):
    runs = _runs(tmp_path, seeds=(0, 1), conditions=("action", "rec", "karma"), users=40, n_items=400)
    summary = json.loads(json.dumps({"verdict": study.verdict(runs), "ablations": study.ablations(runs),
                                     "runs": {}}))
    md = study.markdown_ablations(summary)
    lines = md.splitlines()
    assert lines[0].startswith("| metric | action-only is | action-only | rec only |") and "gen only" not in lines[0]
    for e in summary["ablations"]["rec"]:
        row = next(line for line in lines if line.startswith(f"| `{e['metric']}` |"))
        assert format_value(e["rec"]) in row and (f"**{e['status']}**" in row) == e["holds"]
    assert md in study.summary_markdown(summary)


def _controlled_study(root, effects: dict[str, list[float]]):
    """Three seeds of action-only and KARMA whose signed per-seed effects are ``effects[metric]``;
    every other claim gets effects -0.01, 0, 0.01 (p = 1)."""
    runs = []
    for s in range(3):
        karma = {m: 0.5 for m, _ in study.CLAIMS}
        action = {}
        for m, expected in study.CLAIMS:
            e = effects.get(m, [-0.01, 0.0, 0.01])[s]
            action[m] = 0.5 + (e if expected == "higher" else -e)
        runs += [load_run(make_run(root, f"action-s{s}", "action", seed=s, summary=action)),
                 load_run(make_run(root, f"karma-s{s}", "karma", seed=s, summary=karma))]
    return runs


def test_holm_keeps_a_raw_hold_that_the_family_cannot_afford(tmp_path):
    from scipy.stats import t

    # sink_mass: effects 0.015, 0.02, 0.025 (mean 0.02, s 0.005): p = 0.0202 by hand (test_stats), so the raw
    # 95 % CI excludes 0; erank: effects 0.0199, 0.02, 0.0201 (p ≈ 2e-5) survives any correction
    runs = _controlled_study(tmp_path, {"sink_mass": [0.015, 0.02, 0.025], "erank": [0.0199, 0.02, 0.0201]})
    v = study.verdict(runs)
    m = len(v)
    assert m == len(study.CLAIMS)
    sink, erank = _claim(v, "sink_mass"), _claim(v, "erank")
    assert sink["holds"] and sink["p"] == pytest.approx(0.0202, abs=1e-4)
    assert erank["holm"]["step"] == 1 and sink["holm"]["step"] == 2
    assert sink["holm"]["alpha"] == pytest.approx(0.05 / (m - 1)) and sink["holm"]["m"] == m
    half = t.ppf(1 - 0.05 / (m - 1) / 2, 2) * 0.005 / math.sqrt(3)  # the t-interval at the Holm level
    assert (sink["holm"]["ci_low"], sink["holm"]["ci_high"]) == pytest.approx((0.02 - half, 0.02 + half))
    assert sink["holm"]["ci_low"] < 0 < sink["ci_low"]
    assert not sink["holm"]["holds"] and sink["holm"]["status"] == "within noise"
    assert erank["holm"]["holds"] and erank["holm"]["status"] == "holds"
    assert erank["holm"]["family"] == "action vs karma"
    assert all(not e["holm"]["holds"] for e in v if e["metric"] not in ("erank",))
    assert all(e["holm"]["ci_high"] - e["holm"]["ci_low"] >= e["ci_high"] - e["ci_low"] for e in v)  # never narrower


def test_holm_stops_at_the_first_retained_claim(tmp_path):
    # sink_mass's corrected CI excludes 0 on its own, but a claim with a smaller p came first and was kept
    runs = _controlled_study(tmp_path, {"sink_mass": [0.015, 0.02, 0.025]})
    entries = [dict(e) for e in study.verdict(runs)][:3]
    for e in entries:
        e["p"] = 0.5
    entries[0]["p"] = 0.001
    always = lambda level: study.stats.Interval(1.0, 0.5, 1.5, 3, "excludes 0")  # noqa: E731
    never = lambda level: study.stats.Interval(1.0, -0.5, 2.5, 3, "contains 0")  # noqa: E731
    study.holm_correct(entries, [never, always, always], "f")
    assert [e["holm"]["holds"] for e in entries] == [False, False, False]
    assert [e["holm"]["status"] for e in entries] == ["within noise"] * 3


def test_every_multi_seed_claim_carries_its_detection_limit(tmp_path):
    runs = _controlled_study(tmp_path, {"sink_mass": [0.01, 0.02, 0.03]})
    sink = _claim(study.verdict(runs), "sink_mass")
    t975, t80 = 0.95 / math.sqrt(2 * 0.975 * 0.025), 0.6 / math.sqrt(2 * 0.8 * 0.2)  # df = 2, closed form
    assert sink["detectable"] == pytest.approx(t975 * 0.01 / math.sqrt(3))
    assert sink["detectable_80"] == pytest.approx((t975 + t80) * 0.01 / math.sqrt(3))
    assert "seed spread of 3" in sink["detectable_from"]
    # the corrected test's limit: t at the claim's Holm level (df = 2), the same spread
    from scipy.stats import t as student

    holm = sink["holm"]
    assert holm["detectable"] == pytest.approx(student.ppf(1 - holm["alpha"] / 2, 2) * 0.01 / math.sqrt(3))
    assert holm["level"] > 0.95 and holm["detectable"] > sink["detectable"]
    assert study.holm_detectable_text(sink) == format_value(holm["detectable"])
    one = _claim(study.verdict(_runs(tmp_path / "one", users=30, n_items=100)), "sink_mass")
    assert one["detectable"] is None and one["holm"]["detectable"] is None  # one seed: no seed spread
    with_cal = _claim(study.verdict(runs, calibration={"sink_mass": -0.2, "erank": 3.0}), "sink_mass")
    assert with_cal["detectable_dose"] == pytest.approx(sink["detectable"] / 0.2)
    assert with_cal["detectable_80_dose"] == pytest.approx(sink["detectable_80"] / 0.2)
    assert with_cal["holm"]["detectable_dose"] == pytest.approx(holm["detectable"] / 0.2)
    assert "detectable_dose" in _claim(study.verdict(runs, calibration={"erank": 3.0}), "sink_mass")
    assert _claim(study.verdict(runs, calibration={"erank": 3.0}), "sink_mass")["detectable_dose"] is None


def test_a_calibrate_output_is_read_off_its_measured_curve(tmp_path):
    """With the committed SmolLM2 calibration, a claim's detection limit becomes the dose that
    dose_response.dose_for reads off the measured curve (not |difference| / slope)."""
    from karma_probe.report.dose_response import dose_for

    cal = Path(__file__).parents[1] / "reports" / "calibration-smollm2"
    runs = _controlled_study(tmp_path, {"key_concentration": [0.01, 0.03, 0.05]})
    claim = _claim(study.verdict(runs, calibration=cal), "key_concentration")
    assert claim["detectable"] is not None
    assert claim["detectable_dose"] == dose_for("key_concentration", claim["detectable"], cal)
    assert claim["detectable_dose"] is not None and claim["detectable_dose"] > 0
    assert study.calibration_doses(cal / "calibration.json")("key_concentration", claim["detectable"]) == \
        claim["detectable_dose"]


def test_calibration_is_read_flat_or_nested(tmp_path):
    from karma_probe.core.errors import BadInput

    assert study.read_calibration({"sink_mass": 0.3}) == {"sink_mass": 0.3}
    nested = {"families": {"attention": {"metrics": {"sink_mass": {"slope": {"estimate": 0.3, "ci": [0.2, 0.4]}},
                                                     "sink_rate": {"slope": 0.5}}},
                           "geometry": {"aniso_cos": {"slope": -0.1}}}}
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(nested))
    assert study.read_calibration(path) == {"sink_mass": 0.3, "sink_rate": 0.5, "aniso_cos": -0.1}
    for bad in ({"unknown": 1.0}, tmp_path / "missing.json"):
        with pytest.raises(BadInput):
            study.read_calibration(bad)


def test_baseline_gaps_are_corrected_per_condition_and_ranker(tmp_path):
    runs = _runs(tmp_path, users=200, n_items=400)
    per = study.vs_baselines(runs)["karma"]["popularity"]
    assert {e["holm"]["family"] for e in per.values()} == {"karma vs popularity"}
    assert sorted(e["holm"]["step"] for e in per.values()) == list(range(1, len(per) + 1))
    for e in per.values():
        assert e["holm"]["ci_low"] <= e["ci_low"] and e["holm"]["ci_high"] >= e["ci_high"]
        assert e["holm"]["status"].replace(" (one seed)", "") in ("better", "worse", "within noise")
    ref = study.vs_reference(runs)["karma"]["sasrec"]
    assert ref["holm"]["m"] == 1 and (ref["holm"]["ci_low"], ref["holm"]["ci_high"]) == pytest.approx(
        (ref["ci_low"], ref["ci_high"]))
