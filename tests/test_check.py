"""The regression gate: pass / regress (exit 1) / bad input (exit 2), JUnit XML, relational claims."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fakeruns import make_run

from karma_probe import check
from karma_probe.cli import main
from karma_probe.errors import BadInput
from karma_probe.results import load_run


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
                                               "rel_tol": check.DEFAULT_REL_TOL}
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
    code = ("import karma_probe.commands.check, karma_probe.check, karma_probe.results; "
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
