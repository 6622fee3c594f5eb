"""rundir: the run directory's one typed module. Known answers for its layout, Capture, Record and readers.

Everything here runs on small hand-made arrays and JSON in tmp_path (no model), so the format's
contract is checked in milliseconds: a capture written and read back is the same capture, the
bytes on disk are the ones the torch writer produced before, and each kind of wrong input is
refused with a BadInput that names the file.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from karma_probe.core.errors import BadInput
from karma_probe.rundir import (ANALYSIS_SCHEMA, CAPTURE_SCHEMA, Capture, Record, RunPaths, checkpoint_step,
                                intermediate_checkpoints, parse_analysis, read_analysis, read_capture, read_config,
                                read_hidden, read_maps, read_metrics, read_train_log, write_analysis, write_capture,
                                write_json)
from karma_probe.rundir.capture import check_fingerprint, check_step, check_target, describe

ROOT = Path(__file__).resolve().parents[1]
L, H, N, T, D, E, ITEMS = 2, 3, 4, 5, 6, 4, 7  # layers, heads, probes, key positions, width, embedding, items


def _capture(seed: int = 0) -> Capture:
    """A small capture that passes Capture.validate: history and text stats, one map, hidden states."""
    rng = np.random.default_rng(seed)
    stats = {}
    for s in ("history", "text"):
        stats |= {f"{s}.attn.first_mass_sum": rng.random((L, H), dtype=np.float32),
                  f"{s}.attn.entropy_sum": rng.random((L, H), dtype=np.float32),
                  f"{s}.attn.key_conc_sum": rng.random((L, H), dtype=np.float32),
                  f"{s}.attn.key_received_sum": rng.random((L, H, T), dtype=np.float32),
                  f"{s}.attn.rows": np.array([12.0], dtype=np.float32),
                  f"{s}.resid.massive": rng.random((N, L + 1), dtype=np.float32)}
    maps = {"probe0.attn": rng.random((L, H, 3, 3), dtype=np.float32),
            "probe0.input_ids": np.array([5, 1, 2], dtype=np.int64)}
    hidden = {"marker_hidden": rng.random((N, L + 1, D), dtype=np.float32),
              "interest": rng.random((N, E), dtype=np.float32),
              "items": rng.random((ITEMS, E), dtype=np.float32),
              "targets": np.arange(N, dtype=np.int64)}
    manifest = {"backend": "torch",
                "model": {"architecture": "LlamaForCausalLM", "layers": L, "heads": H, "kv_heads": 1, "width": D,
                          "vocab": 100},
                "probes": {"seed": 0, "count": N + 1, "max_len": T, "max_items": 3,
                           "history": {"count": N, "texts": [f"p{i}" for i in range(N)],
                                       "users": [str(10 + i) for i in range(N)]},
                           "text": {"count": 1, "texts": ["t"]}},
                "map_labels": {"probe0": ["a", "b", "c"]},
                "run": {"name": "r", "step": 7}}
    return Capture(manifest, stats, maps, hidden)


def _checkpoint(path: Path, *, layers: int = L, step: int | None = 7) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "config.json", {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": layers,
                                      "num_attention_heads": H, "num_key_value_heads": 1, "hidden_size": D,
                                      "vocab_size": 100})
    if step is not None:
        write_json(path / "state.json", {"step": step})
    return path


def _same_arrays(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


# --------------------------------------------------------------------------- layout


def test_layout_names_the_documented_paths(tmp_path):
    p = RunPaths(tmp_path / "run")
    rel = {k: str(getattr(p, k).relative_to(p.root)) for k in
           ("config", "metrics", "analysis", "train_log", "checkpoint", "checkpoints", "capture", "manifest", "state",
            "tokenizer")}
    assert rel == {"config": "config.json", "metrics": "metrics.json", "analysis": "analysis.json",
                   "train_log": "train_log.jsonl", "checkpoint": "checkpoint", "checkpoints": "checkpoints",
                   "capture": "capture", "manifest": "capture/manifest.json", "state": "checkpoint/state.json",
                   "tokenizer": "checkpoint/tokenizer.json"}
    assert str(p.step(100).relative_to(p.root)) == "checkpoints/step-000100"
    assert (CAPTURE_SCHEMA, ANALYSIS_SCHEMA) == ("karma_probe.capture/1", "karma_probe.analysis/1")
    assert p.stages() == []
    write_json(p.metrics, {})
    write_json(p.analysis, {})
    assert p.stages() == ["metrics", "analysis"]


def test_intermediate_checkpoints_in_step_order(tmp_path):
    run = tmp_path / "run"
    for step in (300, 20, 1000):
        _checkpoint(RunPaths(run).step(step), step=step)
    (RunPaths(run).checkpoints / "step-000500").mkdir()  # no model in it: not a checkpoint
    _checkpoint(RunPaths(run).checkpoints / "step-000040", step=None)  # no state.json: step from the name
    assert [checkpoint_step(c) for c in intermediate_checkpoints(run)] == [20, 40, 300, 1000]
    assert intermediate_checkpoints(tmp_path / "nothing") == []


# --------------------------------------------------------------------------- Capture


def test_capture_round_trip_write_read_is_equal(tmp_path):
    cap = _capture()
    out = write_capture(tmp_path / "capture", cap)
    back = read_capture(tmp_path)  # a run dir holding capture/ reads the same as the capture dir
    assert back.path == out
    for part in ("stats", "maps", "hidden"):
        _same_arrays(getattr(back, part), getattr(cap, part))
    assert back.manifest == {"schema": CAPTURE_SCHEMA, **cap.manifest}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["hidden.safetensors"]["targets"] == {"shape": [N], "dtype": "int64"}
    assert manifest["files"]["stats.safetensors"] == describe(cap.stats)
    assert [p.name for p in sorted(out.iterdir())] == ["hidden.safetensors", "manifest.json", "maps.safetensors",
                                                       "stats.safetensors"]
    # and again over the first one (a recapture): replaced whole
    write_capture(out, _capture(seed=1))
    _same_arrays(read_capture(out).stats, _capture(seed=1).stats)


def test_torch_view_equals_numpy_and_torch_input_is_stored_as_numpy(tmp_path):
    cap = _capture()
    for part in ("stats", "maps", "hidden"):
        view = cap.torch(part)
        assert all(isinstance(v, torch.Tensor) for v in view.values())
        for k, v in view.items():
            assert np.array_equal(v.numpy(), getattr(cap, part)[k]) and v.numpy().dtype == getattr(cap, part)[k].dtype
    assert cap.torch("hidden")["targets"].dtype == torch.int64
    cap.torch("stats")["history.attn.rows"][0] = 99.0  # a view: shares memory with the arrays
    assert cap.stats["history.attn.rows"][0] == 99.0
    with pytest.raises(ValueError, match="unknown capture part"):
        cap.torch("nope")

    t = Capture(cap.manifest, {k: torch.from_numpy(v.copy()).t() if v.ndim == 2 else torch.from_numpy(v.copy())
                               for k, v in cap.stats.items()},
                cap.torch("maps"), {k: torch.from_numpy(v.copy()).requires_grad_(v.dtype == np.float32)
                                    for k, v in cap.hidden.items()})
    assert all(isinstance(v, np.ndarray) for part in ("stats", "maps", "hidden") for v in getattr(t, part).values())
    _same_arrays(t.hidden, cap.hidden)
    # a transposed (non-contiguous) tensor is written as its values, not its memory
    write_capture(tmp_path / "c", t)
    got = read_capture(tmp_path / "c").stats["history.attn.first_mass_sum"]
    assert np.array_equal(got, cap.stats["history.attn.first_mass_sum"].T)


def test_capture_files_are_the_bytes_the_torch_writer_wrote(tmp_path):
    """The on-disk format is unchanged: each part is the file safetensors.torch wrote before."""
    from safetensors.torch import save_file

    cap = _capture()
    out = write_capture(tmp_path / "capture", cap)
    for part in ("stats", "maps", "hidden"):
        save_file({k: v.contiguous() for k, v in cap.torch(part).items()}, str(tmp_path / f"{part}.torch"),
                  metadata={"schema": CAPTURE_SCHEMA})
        assert (out / f"{part}.safetensors").read_bytes() == (tmp_path / f"{part}.torch").read_bytes(), part


def test_manifest_mismatch_is_refused_naming_the_file(tmp_path):
    out = write_capture(tmp_path / "capture", _capture())
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["stats.safetensors"]["history.attn.rows"]["shape"] = [2]
    write_json(out / "manifest.json", manifest)
    with pytest.raises(BadInput, match=r"capture/stats\.safetensors: keys or shapes differ from manifest\.json"):
        read_capture(out)
    read_capture(out, ("hidden",))  # the other parts are still readable on their own


def test_capture_schema_mismatch_and_missing_capture_are_refused(tmp_path):
    out = write_capture(tmp_path / "run" / "capture", _capture())
    manifest = json.loads((out / "manifest.json").read_text())
    write_json(out / "manifest.json", manifest | {"schema": "karma_probe.capture/0"})
    with pytest.raises(BadInput, match=r"manifest\.json: schema is 'karma_probe.capture/0', expected 'karma_probe.capture/1'"):
        read_capture(out)
    with pytest.raises(BadInput, match=r"nothing: no capture here .*karma-probe capture .*nothing"):
        read_capture(tmp_path / "nothing")
    (out / "stats.safetensors").write_bytes(b"\x00" * 20)
    write_json(out / "manifest.json", manifest)
    with pytest.raises(BadInput, match=r"stats\.safetensors: unreadable capture stats"):
        read_capture(out)
    (out / "stats.safetensors").unlink()
    with pytest.raises(BadInput, match=r"stats\.safetensors: capture stats not found \(an interrupted capture"):
        read_capture(out)


def test_a_capture_never_replaces_a_run_directory(tmp_path):
    run = tmp_path / "run"
    write_json(run / "config.json", {})
    with pytest.raises(BadInput, match="is not a capture directory"):
        write_capture(run, _capture())
    assert (run / "config.json").is_file()
    (tmp_path / "empty").mkdir()
    assert check_target(tmp_path / "empty") == tmp_path / "empty"


def test_load_checks_the_capture_against_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    write_capture(RunPaths(run).capture, _capture())
    cap = Capture.load(RunPaths(run).capture, _checkpoint(RunPaths(run).checkpoint))
    assert cap.maps == {}  # the analyzers' read leaves the maps on disk
    assert cap.sets() == ["history", "text"] and cap.users() == ["10", "11", "12", "13"]
    assert cap.history_texts() == ["p0", "p1", "p2", "p3"] and cap.max_items() == 3
    assert set(cap.set_stats("text")) == {"attn.first_mass_sum", "attn.entropy_sum", "attn.key_conc_sum",
                                         "attn.key_received_sum", "attn.rows", "resid.massive"}
    with pytest.raises(BadInput, match=r"capture is from another model than .*other \(layers 2 vs 5\)"):
        Capture.load(RunPaths(run).capture, _checkpoint(tmp_path / "other", layers=5))
    with pytest.raises(BadInput, match=r"captured at step 7, but .*later is step 9 \(a stale capture"):
        Capture.load(RunPaths(run).capture, _checkpoint(tmp_path / "later", step=9))
    m = json.loads(RunPaths(run).manifest.read_text())
    check_fingerprint(m, _checkpoint(tmp_path / "same"), RunPaths(run).capture)  # passes: the same model
    check_step(m, _checkpoint(tmp_path / "unknown-step", step=None), RunPaths(run).capture)  # no state: no check


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.hidden.update(interest=c.hidden["interest"][:1], marker_hidden=c.hidden["marker_hidden"][:1],
                               targets=c.hidden["targets"][:1]), r"hidden\.safetensors: 1 history probe\(s\)"),
    (lambda c: c.hidden.update(targets=c.hidden["targets"][:2]), r"hidden\.safetensors: shapes disagree"),
    (lambda c: c.hidden.pop("items"), r"hidden\.safetensors: missing tensor 'items' \(2-d\)"),
    (lambda c: c.stats.update({"history.attn.entropy_sum": np.zeros((L, H + 1), np.float32)}),
     r"stats\.safetensors: history\.attn\.entropy_sum has shape \[2, 4\], the manifest's model has 2 layers × 3 heads"),
    (lambda c: [c.stats.pop(k) for k in list(c.stats) if k.startswith("history.")], r"no history-probe statistics"),
], ids=["one-probe", "counts", "no-items", "head-shape", "no-history"])
def test_validate_names_the_file_of_what_is_wrong(tmp_path, edit, message):
    cap = _capture()
    edit(cap)
    write_capture(tmp_path / "capture", cap)
    with pytest.raises(BadInput, match=message):
        Capture.load(tmp_path / "capture")
    cap.path = None  # in memory (an --all-checkpoints step): the message still says which part
    with pytest.raises(BadInput, match=r"\(in-memory capture\)"):
        cap.validate()


def test_figure_views_of_maps_and_hidden(tmp_path):
    cap = _capture()
    out = write_capture(tmp_path / "capture", cap)
    (probe,) = read_maps(out)
    assert probe.index == 0 and probe.labels == ("a", "b", "c") and probe.input_ids.tolist() == [5, 1, 2]
    assert np.array_equal(probe.attn, cap.maps["probe0.attn"])
    hidden = read_hidden(out)
    assert np.array_equal(hidden.items, cap.hidden["items"]) and hidden.targets.dtype == np.int64
    (out / "manifest.json").unlink()  # a capture copied without its manifest still draws, unlabelled
    assert read_maps(out)[0].labels is None


# --------------------------------------------------------------------------- analysis.json


def _analysis(**changes) -> dict:
    a = {"schema": ANALYSIS_SCHEMA, "run": {"name": "r", "step": 3},
         "records": [Record("sink_mass", 0.25, layer=1, head=0, set="history").to_json(False),
                     Record("erank", float("nan"), set="interest").to_json(True)],
         "summary": {"sink_mass": 0.25, "erank": None}, "higher_is_better": {"sink_mass": False, "erank": True},
         "intervals": {"sink_mass": [0.2, 0.3]},
         "trajectory": [{"step": 20, "summary": {"sink_mass": 0.3}}, {"step": 10, "summary": {"sink_mass": 0.4}}]}
    return a | changes


def test_record_to_json_from_json_round_trip():
    r = Record("sink_mass", 0.25, layer=2, head=1, set="history")
    obj = r.to_json(False)
    assert obj == {"metric": "sink_mass", "layer": 2, "head": 1, "set": "history", "value": 0.25,
                   "higher_is_better": False}
    assert list(obj) == ["metric", "layer", "head", "set", "value", "higher_is_better"]  # the file's key order
    assert Record.from_json(json.loads(json.dumps(obj))) == r
    assert Record.from_json({"metric": "mrr", "value": 0.1}) == Record("mrr", 0.1)  # layer, head, set default to None
    nan = Record("erank", float("inf")).to_json(True)
    assert nan["value"] is None and math.isnan(Record.from_json(nan).value)  # non-finite ↔ null ↔ NaN
    from karma_probe.rundir.analysis import Record as RegistryRecord
    from karma_probe.rundir.analysis import Record as ResultsRecord

    assert RegistryRecord is Record is ResultsRecord  # one class


@pytest.mark.parametrize("record, message", [
    ({"metric": "", "value": 1}, r"records\[0\]\.metric must be a non-empty string"),
    ({"metric": "m", "value": "high"}, r"records\[0\]\.value must be a number or null, got 'high'"),
    ({"metric": "m", "value": 1, "layer": -1}, r"records\[0\]\.layer must be a non-negative integer or null"),
    ({"metric": "m", "value": 1, "head": True}, r"records\[0\]\.head must be a non-negative integer or null"),
    ({"metric": "m", "value": 1, "set": 3}, r"records\[0\]\.set must be a string or null"),
])
def test_a_malformed_record_is_refused_naming_file_and_field(record, message):
    with pytest.raises(BadInput, match=r"runs/x/analysis\.json: " + message):
        parse_analysis(_analysis(records=[record]), "runs/x/analysis.json")


def test_analysis_write_read_and_schema_mismatch(tmp_path):
    run = tmp_path / "run"
    write_analysis(run, {k: v for k, v in _analysis().items() if k != "schema"})
    assert json.loads(RunPaths(run).analysis.read_text())["schema"] == ANALYSIS_SCHEMA  # the writer stamps it
    a = read_analysis(run)
    assert a.records[0] == Record("sink_mass", 0.25, layer=1, head=0, set="history")
    assert math.isnan(a.records[1].value) and math.isnan(a.summary["erank"])
    assert [t["step"] for t in a.trajectory] == [10, 20] and a.intervals == {"sink_mass": (0.2, 0.3)}
    assert a.by_layer_head("sink_mass").shape == (2, 1)
    write_json(RunPaths(run).analysis, _analysis(schema="karma_probe.analysis/0"))
    with pytest.raises(BadInput, match=r"analysis\.json: schema is 'karma_probe.analysis/0', expected "
                                       r"'karma_probe.analysis/1' .*re-run `karma-probe analyze`"):
        read_analysis(run)
    with pytest.raises(BadInput, match=r"analysis\.json: not found \(run `karma-probe analyze"):
        read_analysis(tmp_path / "none")


# --------------------------------------------------------------------------- the run-level files


def test_run_files_are_read_checked(tmp_path):
    run = tmp_path / "run"
    assert (read_config(run), read_metrics(run), read_train_log(run)) == ({}, None, ())
    with pytest.raises(BadInput, match=r"config\.json: run config not found"):
        read_config(run, required=True)
    write_json(RunPaths(run).config, ["not", "an", "object"])
    with pytest.raises(BadInput, match=r"config\.json must be a JSON object, got list"):
        read_config(run)
    write_json(RunPaths(run).metrics, {"test": {"hr@10": 0.5, "mrr": None}, "ranks": {"test": [1, 3]}})
    m = read_metrics(run)
    assert m["test"]["hr@10"] == 0.5 and math.isnan(m["test"]["mrr"]) and m["ranks"]["test"] == [1, 3]
    write_json(RunPaths(run).metrics, {"ranks": {"test": [0, 3]}})
    with pytest.raises(BadInput, match=r"metrics\.json: ranks\.test must be a list of 1-based integer ranks"):
        read_metrics(run)
    RunPaths(run).train_log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in read_train_log(run)] == [1, 2]  # the line a kill cut short is dropped
    RunPaths(run).train_log.write_text('{"loss": 2.0}\n')
    with pytest.raises(BadInput, match=r"train_log\.jsonl: line 1 is not a logged step"):
        read_train_log(run)


# --------------------------------------------------------------------------- one module, one bottom layer


def test_rundir_is_the_bottom_layer():
    """Importing rundir loads no other karma_probe module but errors, and no torch."""
    code = ("import sys, karma_probe.rundir; "
            "mods = sorted(m for m in sys.modules if m.startswith('karma_probe') and not m.startswith('karma_probe.rundir')); "
            "assert mods == ['karma_probe', 'karma_probe.core', 'karma_probe.core.errors'], mods; assert 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for f in (ROOT / "karma_probe" / "rundir").glob("*.py"):  # lazy imports included
        for line in f.read_text().splitlines():
            if "import" in line and "karma_probe." in line and line.lstrip().startswith(("from ", "import ")):
                assert line.split()[1].startswith(("karma_probe.rundir", "karma_probe.core.errors")), f"{f.name}: {line}"


def test_schema_strings_are_written_down_once():
    """Outside rundir/layout.py the package names the schemas only through it."""
    for schema in (CAPTURE_SCHEMA, ANALYSIS_SCHEMA):
        found = [str(f.relative_to(ROOT)) for f in (ROOT / "karma_probe").rglob("*.py") if schema in f.read_text()]
        assert found == ["karma_probe/rundir/layout.py"], (schema, found)
