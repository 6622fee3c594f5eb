"""The regression gate: pass / regress (exit 1) / bad input (exit 2), JUnit XML, relational claims."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from fakeruns import make_run

from karma_probe.cli import main
from karma_probe.core.errors import BadInput
from karma_probe.report import check
from karma_probe.report.results import load_run


@pytest.fixture
def runs(tmp_path):
    return (make_run(tmp_path / "runs", "karma", "karma"), make_run(tmp_path / "runs", "action", "action"))


def _baseline(path: Path, metrics: dict) -> Path:
    path.write_text(json.dumps({"schema": check.BASELINE_SCHEMA, "source": {}, "metrics": metrics}))
    return path


def _value(run_path, metric):
    return load_run(run_path).summary[metric]


# --------------------------------------------------------------------------- tolerance semantics

def test_a_bad_move_within_tolerance_passes_beyond_it_regresses(tmp_path, runs):
    karma = runs[0]
    sink = _value(karma, "sink_mass")  # lower is better: the run being higher than the baseline is bad
    ok = _baseline(tmp_path / "ok.json", {"sink_mass": {"value": sink - 0.009, "abs_tol": 0.01}})
    bad = _baseline(tmp_path / "bad.json", {"sink_mass": {"value": sink - 0.011, "abs_tol": 0.01}})
    assert main(["check", str(karma), "--baseline", str(ok)]) == 0
    assert main(["check", str(karma), "--baseline", str(bad)]) == 1


def test_good_direction_never_fails_and_is_reported_as_improved(runs):
    run = load_run(runs[0])
    hr = run.summary["hr@10"]  # higher is better: a baseline far below the run is an improvement
    b = check.Baseline(Path("b.json"), (check.Expectation("hr@10", hr - 0.5, abs_tol=0.01),
                                        check.Expectation("sink_mass", run.summary["sink_mass"] + 0.5)), {})
    outcomes = check.check_baseline(run, b)
    assert [o.status for o in outcomes] == ["improved", "improved"]
    assert all(o.passed for o in outcomes)


def test_relative_and_absolute_tolerance_take_the_looser():
    e = check.Expectation("m", 2.0, abs_tol=0.1, rel_tol=0.2)
    assert e.slack == pytest.approx(0.4)
    assert check.Expectation("m", 2.0, abs_tol=0.5, rel_tol=0.2).slack == pytest.approx(0.5)
    assert check.Expectation("m", 2.0).slack == 0.0


def test_zero_tolerance_exact_value_passes_any_bad_move_fails(runs):
    run = load_run(runs[0])
    v = run.summary["hr@10"]
    same = check.check_baseline(run, check.Baseline(Path("b"), (check.Expectation("hr@10", v),), {}))
    worse = check.check_baseline(run, check.Baseline(Path("b"), (check.Expectation("hr@10", v + 1e-6),), {}))
    assert same[0].status == "ok" and worse[0].status == "regressed"


def test_non_finite_run_value_fails_the_check(tmp_path):
    run_path = make_run(tmp_path, "nan", "karma", summary={"hr@10": None})
    b = _baseline(tmp_path / "b.json", {"hr@10": {"value": 0.1, "abs_tol": 1}})
    assert main(["check", str(run_path), "--baseline", str(b)]) == 1


# --------------------------------------------------------------------------- bad input (exit 2)

def test_metric_missing_from_run_is_bad_input_and_named(tmp_path, runs, capsys):
    b = _baseline(tmp_path / "b.json", {"no_such_metric": {"value": 1.0, "higher_is_better": True}})
    assert main(["check", str(runs[0]), "--baseline", str(b)]) == 2
    err = capsys.readouterr().err
    assert "no_such_metric" in err and "analysis.json" in err and "Traceback" not in err


@pytest.mark.parametrize("content, needle", [
    ({"schema": "karma_probe.baseline/0", "metrics": {"hr@10": {"value": 1}}}, "schema"),
    ({"schema": check.BASELINE_SCHEMA, "metrics": {}}, "non-empty"),
    ({"schema": check.BASELINE_SCHEMA, "metrics": {"hr@10": {}}}, "value"),
    ({"schema": check.BASELINE_SCHEMA, "metrics": {"hr@10": {"value": "high"}}}, "value"),
    ({"schema": check.BASELINE_SCHEMA, "metrics": {"hr@10": {"value": 1, "abs_tol": -1}}}, ">= 0"),
    ({"schema": check.BASELINE_SCHEMA, "metrics": {"hr@10": {"value": 1, "abs_tool": 1}}}, "abs_tool"),
    ({"schema": check.BASELINE_SCHEMA, "metrics": {"hr@10": {"value": 1, "higher_is_better": False}}}, "declares true"),
])
def test_malformed_baseline_is_bad_input(tmp_path, runs, capsys, content, needle):
    b = tmp_path / "b.json"
    b.write_text(json.dumps(content))
    assert main(["check", str(runs[0]), "--baseline", str(b)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(b) in err


def test_unreadable_baseline_and_missing_files_are_bad_input(tmp_path, runs, capsys):
    b = tmp_path / "b.json"
    b.write_text('{"schema": "karma_probe.baseline/1", "metrics": {')  # cut short
    assert main(["check", str(runs[0]), "--baseline", str(b)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["check", str(runs[0]), "--baseline", str(tmp_path / "nope.json")]) == 2
    assert main(["check", str(tmp_path / "no-run"), "--against", str(runs[1]), "--expect", "hr@10>"]) == 2


def test_run_with_wrong_analysis_schema_is_bad_input(tmp_path, capsys):
    run_path = make_run(tmp_path, "old", "karma")
    a = json.loads((run_path / "analysis.json").read_text())
    a["schema"] = "karma_probe.analysis/0"
    (run_path / "analysis.json").write_text(json.dumps(a))
    b = _baseline(tmp_path / "b.json", {"hr@10": {"value": 0.1}})
    assert main(["check", str(run_path), "--baseline", str(b)]) == 2
    assert "karma_probe.analysis/1" in capsys.readouterr().err


def test_no_direction_anywhere_is_bad_input(tmp_path, capsys):
    run_path = make_run(tmp_path, "r", "karma")
    a = json.loads((run_path / "analysis.json").read_text())
    del a["higher_is_better"]["hr@10"]
    (run_path / "analysis.json").write_text(json.dumps(a))
    b = _baseline(tmp_path / "b.json", {"hr@10": {"value": 0.1}})
    assert main(["check", str(run_path), "--baseline", str(b)]) == 2
    assert "higher_is_better" in capsys.readouterr().err


def test_usage_errors(runs):
    karma, action = map(str, runs)
    assert main(["check", karma]) == 2                                       # nothing to check against
    assert main(["check", karma, "--against", action]) == 2                  # --against without --expect
    assert main(["check", karma, "--expect", "hr@10>"]) == 2                 # --expect without --against
    assert main(["check", karma, "--against", action, "--expect", "hr@10"]) == 2   # no operator


# --------------------------------------------------------------------------- relational claims

def test_relational_expectations(runs, capsys):
    karma, action = map(str, runs)  # fakeruns: action is the more collapsed one
    assert main(["check", karma, "--against", action, "--expect", "sink_mass<", "--expect", "hr@10>"]) == 0
    out = capsys.readouterr().out
    assert "sink_mass" in out and "< action" in out and "PASS: 2 checks" in out
    assert main(["check", karma, "--against", action, "--expect", "sink_mass>", "--expect", "hr@10>="]) == 1
    assert "sink_mass > action" in capsys.readouterr().err


def _sink(run, value):
    """Set ``run``'s summary sink_mass (the issue's two captures of one model)."""
    f = run / "analysis.json"
    obj = json.loads(f.read_text())
    obj["summary"]["sink_mass"] = value
    f.write_text(json.dumps(obj))


def test_relational_float_noise_is_equal_within_tolerance(runs, tmp_path, capsys):
    """The issue: `--expect "sink_mass<="` between two captures of one model failed on 1.75e-10."""
    karma, action = runs
    _sink(karma, 0.3614551234)
    _sink(action, 0.3614551234 - 1.75e-10)  # karma is above action by float noise
    out_json = tmp_path / "c.json"
    assert main(["check", str(karma), "--against", str(action), "--expect", "sink_mass<=", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "equal within tolerance" in out and "PASS: 1 checks" in out
    row = json.loads(out_json.read_text())["results"][0]
    assert row["status"] == "equal within tolerance" and row["passed"] and row["slack"] == pytest.approx(3.6145e-7, rel=1e-3)
    assert "(|difference| 1.75e-10 <= 3.61e-07)" in row["message"]
    # equal is not strictly below: "<" fails, and says why
    assert main(["check", str(karma), "--against", str(action), "--expect", "sink_mass<"]) == 1
    assert "EQUAL WITHIN TOLERANCE: NOT <" in capsys.readouterr().out
    # a real difference is still one: 1e-4 above fails "<=" by default, passes with --tolerance 1e-3
    _sink(action, 0.3614551234 - 1e-4)
    assert main(["check", str(karma), "--against", str(action), "--expect", "sink_mass<="]) == 1
    capsys.readouterr()
    assert main(["check", str(karma), "--against", str(action), "--expect", "sink_mass<=", "--tolerance", "1e-3"]) == 0
    assert "equal within tolerance" in capsys.readouterr().out


def test_tolerance_needs_a_relation_and_a_sane_value(runs, tmp_path, capsys):
    karma, action = map(str, runs)
    b = _baseline(tmp_path / "b.json", {"sink_mass": {"value": 0.5, "abs_tol": 0.01}})
    assert main(["check", karma, "--baseline", str(b), "--tolerance", "1e-3"]) == 2
    assert "--tolerance applies to --against" in capsys.readouterr().err
    for bad in ("-1", "nan"):
        assert main(["check", karma, "--against", action, "--expect", "sink_mass<", "--tolerance", bad]) == 2
        assert "--tolerance must be a finite number >= 0" in capsys.readouterr().err


def test_parse_expect():
    assert check.parse_expect("sink_mass<") == check.Relation("sink_mass", "<")
    assert check.parse_expect(" hr@10 >= ") == check.Relation("hr@10", ">=")
    for bad in ("sink_mass", "<", "a<b", "sink_mass=<"):
        with pytest.raises(BadInput):
            check.parse_expect(bad)


def test_relational_claim_on_missing_metric_names_it(runs, capsys):
    assert main(["check", str(runs[0]), "--against", str(runs[1]), "--expect", "bogus<"]) == 2
    assert "bogus" in capsys.readouterr().err


# --------------------------------------------------------------------------- JUnit / JSON / baseline updates

def test_junit_and_json_reports(tmp_path, runs):
    karma = runs[0]
    s = load_run(karma).summary
    b = _baseline(tmp_path / "b.json", {
        "sink_mass": {"value": s["sink_mass"], "abs_tol": 0.01},
        "hr@10": {"value": s["hr@10"] + 0.1, "abs_tol": 0.01},  # the run is 0.1 below: regression
        "erank": {"value": s["erank"], "rel_tol": 0.1}})
    junit, out_json = tmp_path / "out" / "check.xml", tmp_path / "out" / "check.json"
    code = main(["check", str(karma), "--baseline", str(b), "--against", str(runs[1]),
                 "--expect", "sink_mass<", "--junit", str(junit), "--json", str(out_json)])
    assert code == 1
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["sink_mass", "hr@10", "erank", "sink_mass < action"]
    assert suite.get("tests") == "4" and suite.get("failures") == "1" and root.get("failures") == "1"
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["hr@10"]
    assert "regressed" in cases[1].find("failure").get("message")
    report = json.loads(out_json.read_text())
    assert report["passed"] is False
    assert [r["status"] for r in report["results"]] == ["ok", "regressed", "ok", "ok"]
    assert report["results"][1]["delta"] == pytest.approx(-0.1)


def test_update_baseline_writes_then_passes_and_keeps_hand_tuned_tolerances(tmp_path, runs, capsys):
    karma, action = runs
    b = tmp_path / "baselines" / "tiny.json"
    assert main(["check", str(karma), "--baseline", str(b), "--update-baseline"]) == 0
    written = json.loads(b.read_text())
    assert written["schema"] == check.BASELINE_SCHEMA
    assert set(written["metrics"]) == set(load_run(karma).summary)
    assert written["metrics"]["sink_mass"] == {"value": pytest.approx(_value(karma, "sink_mass")),
                                               "higher_is_better": False, "abs_tol": check.DEFAULT_ABS_TOL,
                                               "rel_tol": check.DEFAULT_REL_TOL, "bounds": [0.0, 1.0]}
    assert "bounds" not in written["metrics"]["erank"]  # unbounded above: no bound claimed
    assert main(["check", str(karma), "--baseline", str(b)]) == 0
    # the collapsed run regresses against the karma baseline
    assert main(["check", str(action), "--baseline", str(b)]) == 1

    # hand-tune: keep two metrics, one with a wide tolerance; refreshing keeps both choices
    written["metrics"] = {"sink_mass": written["metrics"]["sink_mass"] | {"abs_tol": 0.5},
                          "hr@10": written["metrics"]["hr@10"]}
    b.write_text(json.dumps(written))
    assert main(["check", str(action), "--baseline", str(b), "--update-baseline"]) == 0
    refreshed = json.loads(b.read_text())["metrics"]
    assert set(refreshed) == {"sink_mass", "hr@10"}
    assert refreshed["sink_mass"]["abs_tol"] == 0.5
    assert refreshed["hr@10"]["value"] == pytest.approx(_value(action, "hr@10"))


def test_update_baseline_with_chosen_metrics_and_tolerances(tmp_path, runs):
    b = tmp_path / "b.json"
    assert main(["check", str(runs[0]), "--baseline", str(b), "--update-baseline", "--metric", "hr@10",
                 "--metric", "sink_mass", "--rel-tol", "0.2", "--abs-tol", "0"]) == 0
    m = json.loads(b.read_text())["metrics"]
    assert list(m) == ["hr@10", "sink_mass"] and m["hr@10"]["rel_tol"] == 0.2 and m["hr@10"]["abs_tol"] == 0


def test_update_baseline_refuses_bad_input_and_writes_nothing(tmp_path, runs):
    b = tmp_path / "b.json"
    assert main(["check", str(runs[0]), "--baseline", str(b), "--update-baseline", "--metric", "bogus"]) == 2
    assert main(["check", str(runs[0]), "--baseline", str(b), "--update-baseline", "--rel-tol", "-1"]) == 2
    assert main(["check", str(runs[0]), "--update-baseline"]) == 2
    assert not b.exists()
    assert list(tmp_path.glob(".b.json*")) == []  # no temp file left behind


def test_regression_writes_junit_but_bad_input_writes_nothing(tmp_path, runs):
    junit = tmp_path / "check.xml"
    b = _baseline(tmp_path / "b.json", {"bogus": {"value": 1.0, "higher_is_better": True}})
    assert main(["check", str(runs[0]), "--baseline", str(b), "--junit", str(junit)]) == 2
    assert not junit.exists()


# --------------------------------------------------------------------------- light install, real CLI

def test_check_and_results_do_not_import_torch():
    code = ("import karma_probe.commands.check, karma_probe.report.check, karma_probe.report.results; "
            "import sys; assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cli_subprocess(tmp_path, runs):
    karma, action = map(str, runs)
    b = tmp_path / "b.json"
    cli = [sys.executable, "-m", "karma_probe", "check"]
    r = subprocess.run(cli + [karma, "--baseline", str(b), "--update-baseline"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + [karma, "--baseline", str(b), "--junit", str(tmp_path / "j.xml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "PASS" in r.stdout and "sink_mass" in r.stdout
    ET.parse(tmp_path / "j.xml")
    r = subprocess.run(cli + [action, "--baseline", str(b)], capture_output=True, text=True)
    assert r.returncode == 1 and "FAIL" in r.stdout and "checks failed" in r.stderr
    r = subprocess.run(cli + [karma, "--baseline", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.json" in r.stderr and "Traceback" not in r.stderr
    # a whole check through the CLI never pulls in torch (the CLI imports only the chosen subcommand)
    probe = (f"import sys; from karma_probe.cli import main; "
             f"assert main(['check', {karma!r}, '--baseline', {str(b)!r}]) == 0; "
             f"assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- tolerances from noise, stuck metrics (issue 13)

@pytest.fixture
def seeds(tmp_path):
    return [make_run(tmp_path / "seeds", f"karma-s{s}", "karma", seed=s) for s in (0, 1, 2)]


def test_tolerances_from_the_spread_over_seeds(tmp_path, seeds):
    b = tmp_path / "noise.json"
    assert main(["check", *map(str, seeds), "--baseline", str(b), "--update-baseline"]) == 0
    written = json.loads(b.read_text())
    runs = [load_run(s) for s in seeds]
    for metric in ("sink_mass", "erank", "lm_ppl"):
        values = [r.summary[metric] for r in runs]
        spec = written["metrics"][metric]
        std = float(np.std(values, ddof=1))
        assert spec["value"] == pytest.approx(np.mean(values))
        assert spec["abs_tol"] == pytest.approx(max(3 * std, check.NOISE_ABS_FLOOR))
        assert spec["rel_tol"] == check.NOISE_REL_FLOOR
        assert spec["noise"] == {"std": pytest.approx(std), "n": 3, "k": 3.0, "values": pytest.approx(values)}
    assert written["source"]["run"] == [str(s) for s in seeds] and "3 * std" in written["source"]["tolerance"]
    # every seed passes against the mean of the three; the collapsed action run does not
    for s in seeds:
        assert main(["check", str(s), "--baseline", str(b)]) == 0
    assert main(["check", str(make_run(tmp_path, "action", "action")), "--baseline", str(b)]) == 1


def test_noise_k_scales_and_a_constant_metric_gets_the_floor(tmp_path, seeds):
    b = tmp_path / "k.json"
    assert main(["check", *map(str, seeds), "--baseline", str(b), "--update-baseline", "--noise-k", "1",
                 "--metric", "erank", "--metric", "fact_acc"]) == 0
    m = json.loads(b.read_text())["metrics"]
    erank = [load_run(s).summary["erank"] for s in seeds]
    assert m["erank"]["abs_tol"] == pytest.approx(max(np.std(erank, ddof=1), check.NOISE_ABS_FLOOR))
    same = [make_run(tmp_path / "same", f"r{i}", "karma", summary={"fact_acc": 0.25}) for i in range(3)]
    assert main(["check", *map(str, same), "--baseline", str(b), "--update-baseline", "--metric", "fact_acc"]) == 0
    fact = json.loads(b.read_text())["metrics"]["fact_acc"]
    assert fact["noise"]["std"] == 0 and fact["abs_tol"] == check.NOISE_ABS_FLOOR
    assert check.load_baseline(b).metrics[0].slack == pytest.approx(max(check.NOISE_ABS_FLOOR, 0.01 * 0.25))


def test_noise_baseline_refuses_mixed_conditions_and_explicit_tolerances(tmp_path, seeds, runs):
    b = tmp_path / "b.json"
    assert main(["check", str(seeds[0]), str(runs[1]), "--baseline", str(b), "--update-baseline"]) == 2
    assert main(["check", *map(str, seeds), "--baseline", str(b), "--update-baseline", "--abs-tol", "0.1"]) == 2
    assert main(["check", str(seeds[0]), "--baseline", str(b), "--update-baseline", "--noise-k", "2"]) == 2
    assert main(["check", *map(str, seeds), "--baseline", str(b), "--update-baseline", "--noise-k", "0"]) == 2
    assert not b.exists()
    ok = _baseline(tmp_path / "ok.json", {"hr@10": {"value": 0.1}})
    assert main(["check", *map(str, seeds), "--baseline", str(ok)]) == 2  # a check takes one run


def _stuck(tmp_path, metric, value, hib, noise=None):
    spec = {"value": value, "higher_is_better": hib, "abs_tol": 0.001} | ({"noise": noise} if noise else {})
    return check.load_baseline(_baseline(tmp_path / f"{metric}.json", {metric: spec}))


def test_a_metric_at_its_worst_bound_is_flagged_cannot_regress_not_passed(tmp_path):
    run = load_run(make_run(tmp_path, "r", "karma", summary={"recon_exact": 0.0}))
    (o,) = check.check_baseline(run, _stuck(tmp_path, "recon_exact", 0.0, True, {"std": 0.0, "n": 3}))
    assert o.status == "cannot regress" and not o.passed and not o.failed
    assert "never regress" in o.flag and "all 3 baseline runs" in o.flag
    table = check.format_table([o])
    assert "FLAGGED recon_exact" in table and "PASS: 0 checks (1 not checked: cannot regress)" in table
    junit = check.junit_xml([o], "s").getroot()
    suite = junit.find("testsuite")
    assert suite.get("skipped") == "1" and suite.get("failures") == "0"
    case = suite.find("testcase")
    assert case.find("skipped") is not None and case.find("properties/property").get("name") == "flag"
    check.write_json_report(tmp_path / "r.json", [o], {})
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["flagged"] == ["recon_exact"] and report["results"][0]["flag"] == o.flag
    assert report["passed"] is True and report["results"][0]["passed"] is False


def test_a_lower_is_better_metric_at_zero_is_flagged_and_still_checked(tmp_path):
    rate = _stuck(tmp_path, "sink_rate", 0.0, False)
    ok = check.check_baseline(load_run(make_run(tmp_path, "a", "karma", summary={"sink_rate": 0.0})), rate)[0]
    assert ok.status == "ok" and ok.passed and "only get worse" in ok.flag
    assert "(FLAGGED)" in check.format_table([ok])
    worse = check.check_baseline(load_run(make_run(tmp_path, "b", "karma", summary={"sink_rate": 0.25})), rate)[0]
    assert worse.status == "regressed" and worse.failed and worse.flag  # flagged, but the gate still bites
    hr = _stuck(tmp_path, "hr@200", 1.0, True)  # higher-is-better at 1: the best bound
    assert check.check_baseline(load_run(make_run(tmp_path, "c", "karma", summary={"hr@200": 1.0})), hr)[0].flag


def test_a_metric_off_its_bounds_or_unbounded_is_not_flagged(tmp_path):
    run = load_run(make_run(tmp_path, "r", "karma", summary={"recon_exact": 0.2, "uniformity": 0.0}))
    assert not check.check_baseline(run, _stuck(tmp_path, "recon_exact", 0.2, True))[0].flag
    assert not check.check_baseline(run, _stuck(tmp_path, "uniformity", 0.0, False))[0].flag  # no known range


def test_baseline_bounds_field_is_validated(tmp_path, runs):
    for bounds, needle in (([1], "[low, high]"), ([1, 0], "low < high")):
        b = _baseline(tmp_path / "b.json", {"hr@10": {"value": 0.1, "bounds": bounds}})
        assert main(["check", str(runs[0]), "--baseline", str(b)]) == 2
    custom = check.load_baseline(_baseline(tmp_path / "c.json", {"erank": {"value": 1.0, "bounds": [1, 16],
                                                                           "higher_is_better": True}}))
    assert custom.metrics[0].at_bound(True) == "worst"


def test_baseline_from_a_study_summary_matches_the_one_from_its_runs(tmp_path, seeds):
    runs = [load_run(s) for s in seeds]
    metrics = ["sink_mass", "hr@10", "erank"]
    summary = {"table": {"karma": {m: {"values": [r.summary[m] for r in runs]} for m in metrics}},
               "higher_is_better": {m: runs[0].analysis.higher_is_better[m] for m in metrics},
               "runs": {r.name: {"condition": "karma"} for r in runs}}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    from_summary = check.baseline_from_summary(path, "karma")["metrics"]
    from_runs = check.baseline_from_runs(runs, metrics=metrics)["metrics"]
    assert from_summary == from_runs
    with pytest.raises(BadInput, match="no table"):
        check.baseline_from_summary(path, "action")
