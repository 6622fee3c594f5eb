"""Reading run dirs back: validation messages that name the file, and listings that survive broken runs."""

import json

import numpy as np
import pytest
from fakeruns import make_run
from safetensors.numpy import save_file

from karma_probe.analyzers.catalogue import format_value
from karma_probe.core.errors import BadInput
from karma_probe.report.results import decode_tokens, list_runs, load_hidden, load_maps, load_run
from karma_probe.rundir.analysis import parse_analysis


def _edit_analysis(path, change):
    a = json.loads((path / "analysis.json").read_text())
    change(a)
    (path / "analysis.json").write_text(json.dumps(a))


def test_load_run_reads_everything(tmp_path):
    run = load_run(make_run(tmp_path, "karma", "karma"))
    assert run.name == "karma" and run.condition == "karma"
    assert run.metrics["test"]["hr@10"] == run.summary["hr@10"]
    assert len(run.train_log) == 30 and run.config["preset"] == "tiny"
    assert [t["step"] for t in run.analysis.trajectory] == [10, 20, 30]
    assert load_run(run.path / "analysis.json").path == run.path  # the file itself names its run
    assert "records" not in repr(run)  # listings print short


def test_optional_files_may_be_absent(tmp_path):
    path = make_run(tmp_path, "base", "base", metrics=False, train_log=False, trajectory=False)
    (path / "config.json").unlink()
    run = load_run(path)
    assert run.metrics is None and run.train_log == () and run.config == {} and run.analysis.trajectory == ()


@pytest.mark.parametrize("change, needle", [
    (lambda a: a.update(schema="karma_probe.analysis/2"), "karma_probe.analysis/1"),
    (lambda a: a.pop("summary"), "missing 'summary'"),
    (lambda a: a["records"][3].update(value="high"), "records[3].value"),
    (lambda a: a["records"][0].update(layer=-1), "records[0].layer"),
    (lambda a: a["records"][0].pop("metric"), "records[0].metric"),
    (lambda a: a["summary"].update(hr10=[1]), "summary['hr10']"),
    (lambda a: a["higher_is_better"].update(hr10="yes"), "higher_is_better['hr10']"),
    (lambda a: a.update(trajectory=[{"summary": {}}]), "trajectory[0].step"),
    (lambda a: a["samples"].update(decoded="text"), "samples.decoded"),
])
def test_malformed_analysis_names_file_and_field(tmp_path, change, needle):
    path = make_run(tmp_path, "r", "karma", capture=False)
    _edit_analysis(path, change)
    with pytest.raises(BadInput) as e:
        load_run(path)
    assert needle in str(e.value) and str(path / "analysis.json") in str(e.value)


def test_null_values_are_nan_not_errors():
    a = parse_analysis({"schema": "karma_probe.analysis/1", "records": [{"metric": "m", "value": None}],
                        "summary": {"m": None}, "higher_is_better": {"m": True}}, "x")
    assert np.isnan(a.summary["m"]) and np.isnan(a.records[0].value)
    assert format_value(a.summary["m"]) == "nan" and format_value(None) == "n/a"


def test_list_runs_sorts_ok_and_broken(tmp_path):
    make_run(tmp_path, "a-ok", "karma", capture=False)
    half = make_run(tmp_path, "b-half-written", "action", capture=False)
    (half / "analysis.json").write_text((half / "analysis.json").read_text()[:100])
    training = tmp_path / "c-still-training"
    training.mkdir()
    (training / "config.json").write_text("{}")
    bad_log = make_run(tmp_path, "d-bad-log", "karma", capture=False)
    (bad_log / "train_log.jsonl").write_text('"not a step"\n')
    (tmp_path / "not-a-run").mkdir()                       # no run files: ignored
    (tmp_path / ".e-being-written").mkdir()                # atomic_dir temp: ignored
    (tmp_path / ".e-being-written" / "config.json").write_text("{}")
    listing = list_runs(tmp_path)
    assert [r.name for r in listing.ok] == ["a-ok"]
    reasons = {b.name: b.reason for b in listing.broken}
    assert set(reasons) == {"b-half-written", "c-still-training", "d-bad-log"}
    assert "not valid JSON" in reasons["b-half-written"]
    assert "not found" in reasons["c-still-training"] and "karma-probe analyze" in reasons["c-still-training"]
    assert "line 1" in reasons["d-bad-log"]
    with pytest.raises(BadInput, match="no such runs directory"):
        list_runs(tmp_path / "nope")


def test_capture_readers(tmp_path):
    run = load_run(make_run(tmp_path, "r", "action", layers=2, heads=3, tokens=6, probes=3, n=5, e=4, n_items=7))
    maps = load_maps(run)
    assert [m.index for m in maps] == [0, 1, 2]
    assert maps[2].attn.shape == (2, 3, 8, 8) and maps[2].input_ids.dtype == np.int64
    np.testing.assert_allclose(maps[0].attn.sum(-1), 1, atol=1e-5)  # rows are distributions
    hidden = load_hidden(run.path)
    assert hidden.marker_hidden.shape == (5, 3, 16) and hidden.items.shape == (7, 4) and hidden.targets.shape == (5,)


def test_capture_readers_reject_bad_files(tmp_path):
    path = make_run(tmp_path, "r", "karma", capture=False)
    with pytest.raises(BadInput, match="maps.safetensors: attention maps not found"):
        load_maps(path)
    (path / "capture").mkdir()
    (path / "capture" / "maps.safetensors").write_bytes(b"\x10\x00\x00\x00garbage")
    with pytest.raises(BadInput, match="unreadable attention maps"):
        load_maps(path)
    save_file({"probe0.attn": np.zeros((1, 1, 3, 3), np.float32), "probe0.input_ids": np.zeros(4, np.int64)},
              str(path / "capture" / "maps.safetensors"))
    with pytest.raises(BadInput, match="probe0.attn has shape"):
        load_maps(path)
    save_file({"probe0.attn": np.zeros((1, 1, 3, 3), np.float32)}, str(path / "capture" / "maps.safetensors"))
    with pytest.raises(BadInput, match="needs both"):
        load_maps(path)
    save_file({"interest": np.zeros((3, 4), np.float32)}, str(path / "capture" / "hidden.safetensors"))
    with pytest.raises(BadInput, match="missing tensor 'marker_hidden'"):
        load_hidden(path)


def test_decode_tokens_falls_back_to_ids_without_a_tokenizer(tmp_path):
    path = make_run(tmp_path, "r", "karma", capture=False)
    assert decode_tokens(path, np.array([5, 17])) == ["5", "17"]


def test_decode_tokens_uses_the_runs_tokenizer(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = tokenizers.Tokenizer(WordLevel({"hello": 0, "world": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    path = make_run(tmp_path, "r", "karma", capture=False)
    (path / "checkpoint").mkdir()
    tok.save(str(path / "checkpoint" / "tokenizer.json"))
    assert decode_tokens(path, [1, 0]) == ["world", "hello"]


# --------------------------------------------------------------------------- uncertainty (issue 13)

def test_intervals_ranks_and_baselines_are_read(tmp_path):
    run = load_run(make_run(tmp_path, "r", "karma", users=50, n_items=400))
    assert run.analysis.intervals["sink_mass"] == pytest.approx((run.summary["sink_mass"] - 0.02,
                                                                 run.summary["sink_mass"] + 0.02))
    assert run.ranks("test").shape == (50,) and run.ranks("test_all").min() >= 1
    assert run.ranks("test", baseline="markov").shape == (50,)
    assert run.ranks("test", baseline="random") is None and run.ranks("valid") is None
    assert run.seed == 0


def test_run_interval_comes_from_users_for_retrieval_and_from_probes_otherwise(tmp_path):
    run = load_run(make_run(tmp_path, "r", "karma", users=200, n_items=400))
    hr = run.interval("hr@10")
    assert hr.estimate == pytest.approx(run.summary["hr@10"]) and hr.low < hr.estimate < hr.high
    assert "200 users" in hr.method
    sink = run.interval("sink_mass")
    assert (sink.low, sink.estimate, sink.high) == pytest.approx(
        (run.summary["sink_mass"] - 0.02, run.summary["sink_mass"], run.summary["sink_mass"] + 0.02))
    assert run.interval("lm_ppl") is None  # no interval written, no ranks: no CI invented
    old = load_run(make_run(tmp_path, "old", "karma"))  # a run from before issue 13
    assert old.analysis.intervals == {} and old.interval("hr@10") is None and old.ranks() is None


@pytest.mark.parametrize("change, needle", [
    (lambda a: a.update(intervals={"sink_mass": [0.1]}), "intervals['sink_mass']"),
    (lambda a: a.update(intervals={"sink_mass": [0.3, 0.1]}), "low 0.3 > high 0.1"),
    (lambda a: a.update(intervals=[1, 2]), "'intervals'"),
])
def test_malformed_intervals_name_the_field(tmp_path, change, needle):
    path = make_run(tmp_path, "r", "karma", capture=False)
    _edit_analysis(path, change)
    with pytest.raises(BadInput) as e:
        load_run(path)
    assert needle in str(e.value)


def test_malformed_ranks_name_the_field(tmp_path):
    path = make_run(tmp_path, "r", "karma", capture=False, users=10)
    m = json.loads((path / "metrics.json").read_text())
    m["ranks"]["test"][3] = 0
    (path / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(BadInput, match="ranks.test"):
        load_run(path)


def test_zeros_print_as_zero():
    from karma_probe.analyzers.catalogue import format_delta

    assert format_value(-0.0) == "0" and format_delta(4.16e-17) == "+0" and format_delta(-3e-13) == "+0"
    assert format_delta(-0.0123) == "-0.0123" and format_value(1e-13) == "1e-13"  # only deltas are rounded
