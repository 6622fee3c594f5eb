"""analyze: every registered analyzer conforms, analysis.json follows the contract, bad input is one line.

A tiny random-init run (no training: the analyzers do not care how the weights got there) with
a fake capture for the conformance test, and the real capture library for the end-to-end test.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from karma_probe.analyzers import METRICS, Absent, directions, select
from karma_probe.analyzers.attention import attention_sums
from karma_probe.analyzers.inputs import RunInputs
from karma_probe.analyzers.registry import DESIGN_METRICS, METRIC_NAMES
from karma_probe.core.errors import BadInput
from karma_probe.rundir import read_json, write_json
from karma_probe.rundir.capture import Capture

RETRIEVAL = {"hr@10": 0.1, "hr@50": 0.3, "hr@200": 0.6, "ndcg@10": 0.05, "ndcg@50": 0.09, "mrr": 0.04}


def _random_causal(rng, L, H, T):
    s = np.where(np.tril(np.ones((T, T))) > 0, rng.normal(size=(L, H, T, T)), -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def make_run(root: Path, *, condition="karma", step=7, heads=True):
    """A tiny run directory: checkpoint, config.json, metrics.json (no capture yet)."""
    from karma_probe.core.config import make_config
    from karma_probe.data.dataset import load_dataset
    from karma_probe.model.retriever import build_model

    # a text-interface run: its fake capture below embeds rendered prompts (the tiny pipeline test
    # covers continuous-interface runs end to end)
    cfg = make_config("tiny", condition, interface="text", max_history=5)
    model = build_model(cfg, dataset=load_dataset(cfg.dataset))
    model.has_heads = heads
    model.save(root / "checkpoint", {"step": step, "condition": condition})
    write_json(root / "config.json", {"name": root.name, "condition": condition, "seed": 0, "train": cfg.to_dict(),
                                      "git_sha": "0123abc", "versions": {"torch": torch.__version__}})
    write_json(root / "metrics.json", {"valid": RETRIEVAL, "test": RETRIEVAL, "n_items": 1682, "n_users": 943})
    return model


def write_fake_capture(run: Path, model, n=6, step=7):
    """Random attention sums and marker states, but the model's own interest embeddings."""
    from karma_probe.capture.probes import build_probe_set
    from karma_probe.data.dataset import load_dataset
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    c = model.backbone.config
    L, H, d = c.num_hidden_layers, c.num_attention_heads, c.hidden_size
    probes = build_probe_set(load_dataset(read_json(run / "config.json")["train"]["dataset"]), n, n_text=2, max_items=5)
    stats = {}
    for name in ("history", "text"):
        maps = [_random_causal(rng, L, H, T) for T in rng.integers(5, 12, size=3)]
        resid = [rng.normal(size=(L + 1, m.shape[-1], d)) for m in maps]
        stats |= {f"{name}.{k}": v for k, v in attention_sums(maps, resid).items()}
    texts = [p.text for p in probes.history]
    hidden = {"marker_hidden": rng.normal(size=(n, L + 1, d)).astype(np.float32),
              "interest": model.interest_embeddings(texts).numpy(),
              "items": rng.normal(size=(40, model.embed_dim)).astype(np.float32),
              "targets": np.array([p.target for p in probes.history], dtype=np.int64)}
    cap = run / "capture"
    cap.mkdir(parents=True, exist_ok=True)
    save_file(stats, str(cap / "stats.safetensors"))
    save_file(hidden, str(cap / "hidden.safetensors"))
    write_json(cap / "manifest.json", {
        "schema": "karma_probe.capture/1", "backend": "fake",
        "model": {"architecture": "LlamaForCausalLM", "layers": L, "heads": H, "kv_heads": c.num_key_value_heads,
                  "width": d, "vocab": c.vocab_size},
        "probes": {"seed": 0, "count": n + 2, "max_len": 256, "max_items": 5,
                   "history": {"count": n, "texts": texts, "lengths": [len(model.tokenize([t])[0]) for t in texts],
                               "users": [p.user for p in probes.history]}},
        "run": {"name": run.name, "step": step}})


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("fake") / "run"
    model = make_run(run)
    write_fake_capture(run, model)
    return run


@pytest.fixture(scope="module")
def captured_run(tmp_path_factory):
    """A tiny run captured by the real capture library, then analyzed once through the CLI."""
    from karma_probe.capture.run import CaptureOptions, capture_run

    run = tmp_path_factory.mktemp("real") / "karma"
    make_run(run)
    capture_run(run, CaptureOptions(probes=8, text_probes=3, full_maps=2, progress=False))
    r = subprocess.run([sys.executable, "-m", "karma_probe", "analyze", str(run)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return run, r


def cli(*args):
    return subprocess.run([sys.executable, "-m", "karma_probe", "analyze", *map(str, args)], capture_output=True, text=True)


# --------------------------------------------------------------------------- the registry


def test_registry_covers_design_and_declares_everything():
    assert set(METRICS) == set(METRIC_NAMES) and set(DESIGN_METRICS) <= set(METRICS)
    assert [m.name for m in select(None)] == list(METRIC_NAMES)
    # every decodability metric has its null and its gain, both higher-is-better like the metric
    for base in ("recon_token_acc", "recon_exact", "probe_genre_f1", "probe_decode_acc", "probe_decode_acc_own"):
        assert METRICS[f"{base}_shuffled"].higher_is_better and METRICS[f"{base}_gain"].higher_is_better
    for m in METRICS.values():
        assert isinstance(m.higher_is_better, bool), m.name
        doc = m.doc
        assert "=" in doc or "/" in doc, f"{m.name}: docstring has no formula"
        assert "Range" in doc and "Reference" in doc, f"{m.name}: docstring lacks range or reference"
        assert ("Higher" in doc or "higher" in doc or "Lower" in doc or "lower" in doc), m.name
    # the direction each metric is meant to have (higher or lower is better)
    lower = {"sink_mass", "sink_rate", "key_concentration", "massive_act", "sink_rate_gu", "aniso_cos", "top1_var",
             "uniformity", "lm_ppl", "sink_mass_trained", "sink_mass_text", "key_concentration_trained",
             "key_concentration_text"}
    assert {n for n, up in directions().items() if not up} == lower


def test_catalogue_and_registry_agree():
    """Every registered metric has catalogue facts, every catalogue entry is registered, every claim
    and headline names a metric, and the facts agree with what the analyzers declare."""
    from karma_probe.analyzers import catalogue

    assert list(catalogue.FACTS) == list(METRIC_NAMES) and set(METRICS) == set(catalogue.FACTS)
    for name, m in METRICS.items():
        facts = catalogue.FACTS[name]
        assert (facts.higher_is_better, facts.family) == (m.higher_is_better, m.family), name
        assert facts.family in catalogue.FAMILIES and facts.claim in (None, "higher", "lower"), name
        assert facts.base is None or facts.base in METRICS, name
        assert (facts.null is None) == (not name.endswith(tuple(f"_{n}" for n in catalogue.NULLS))), name
        if facts.family == "retrieval":  # copied from metrics.json
            assert m.needs == {"metrics"}, name
    claims = [m for m, _ in catalogue.CLAIMS]
    assert claims and set(claims) <= set(METRICS) and set(catalogue.HEADLINE) <= set(METRICS)
    assert set(catalogue.names(listed=True)) <= set(catalogue.HEADLINE)
    # raw reconstruction and raw probes are no claims (action-only never trains the path); their gains are
    for base in ("recon_token_acc", "recon_exact", "probe_genre_f1", "probe_decode_acc"):
        assert catalogue.FACTS[base].claim is None and catalogue.FACTS[f"{base}_gain"].claim == "lower"


def test_registry_imports_without_torch():
    code = ("import sys; import karma_probe.analyzers as a; "
            "assert len(a.METRICS) == 39; assert 'torch' not in sys.modules and 'sklearn' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unknown_metric_lists_known_ones():
    with pytest.raises(BadInput, match=r"unknown metric\(s\) sink_mas; known: sink_mass, sink_rate"):
        select("sink_mas,erank")


@pytest.fixture(scope="module")
def conformance(fake_run):
    capture = Capture.load(fake_run / "capture", fake_run / "checkpoint")
    inputs = RunInputs(fake_run, capture=capture)
    return inputs, {name: m(inputs) for name, m in METRICS.items()}


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_every_analyzer_produces_well_formed_records(conformance, name):
    inputs, results = conformance
    meas = results[name]
    assert isinstance(meas.value, float) and np.isfinite(meas.value)
    assert meas.records and all(r.metric == name for r in meas.records)
    L = inputs.capture.manifest["model"]["layers"]
    H = inputs.capture.manifest["model"]["heads"]
    for r in meas.records:
        j = r.to_json(METRICS[name].higher_is_better)
        assert set(j) == {"metric", "layer", "head", "set", "value", "higher_is_better"}
        assert r.layer is None or 0 <= r.layer <= L
        assert r.head is None or (r.layer is not None and 0 <= r.head < H)
        assert np.isfinite(r.value)
    # one value per (layer, head) cell, so consumers that index records that way see no duplicates
    cells = [(r.layer, r.head) for r in meas.records if r.layer is not None]
    assert len(cells) == len(set(cells))
    family = METRICS[name].family
    if family == "attention" and name not in ("sink_rate", "massive_act", "sink_rate_gu"):
        assert len([r for r in meas.records if r.head is not None]) == L * H
    if family == "geometry":
        assert {r.set for r in meas.records} == {"interest", "items", "marker"}
        assert sorted(r.layer for r in meas.records if r.set == "marker") == list(range(L + 1))


def test_decodability_samples(conformance):
    _, results = conformance
    for name, decoder in (("recon_exact", "run"), ("probe_decode_acc", "post-hoc")):
        samples = results[name].samples
        assert samples and all(s["decoder"] == decoder and set(s) == {"history", "truth", "decoded", "decoder"}
                               for s in samples)
        assert "Next:" not in samples[0]["history"] and samples[0]["truth"]


# --------------------------------------------------------------------------- analysis.json end to end


@pytest.mark.slow
def test_cli_writes_the_analysis_contract(captured_run):
    from karma_probe.rundir.analysis import parse_analysis

    run, r = captured_run
    out = read_json(run / "analysis.json")
    parse_analysis(out, "analysis.json")  # what report / check / dashboard read
    assert out["schema"] == "karma_probe.analysis/1"
    assert out["run"] | {"versions": None} == {"name": "karma", "condition": "karma", "seed": 0, "git_sha": "0123abc",
                                                "versions": None, "model": "tiny", "checkpoint": "checkpoint", "step": 7}
    assert set(out["summary"]) == set(METRIC_NAMES) and not out["absent"]
    assert out["higher_is_better"] == {k: METRICS[k].higher_is_better for k in out["summary"]}
    assert {k: out["summary"][k] for k in RETRIEVAL if k in out["summary"]} == {k: v for k, v in RETRIEVAL.items() if k != "ndcg@50"}
    assert all(rec["higher_is_better"] == METRICS[rec["metric"]].higher_is_better for rec in out["records"])
    assert {s["decoder"] for s in out["samples"]["decoded"]} == {"run", "post-hoc"}
    assert set(out["analyzed"]["seconds"]) >= set(METRIC_NAMES)
    # intervals over probes: [low, high] for every attention, geometry and decodability headline;
    # over facts / passages for the knowledge metrics
    assert out["interval_method"]["resamples"] == 1000 and out["interval_method"]["level"] == 0.95
    assert set(out["intervals"]) == {m for m in METRIC_NAMES
                                     if METRICS[m].family in ("attention", "geometry", "decodability", "knowledge")}
    for name, (lo, hi) in out["intervals"].items():
        assert lo <= hi and len(out["bootstrap"][name]) == 1000, name
    for name in ("sink_mass", "attn_entropy", "probe_decode_acc", "recon_token_acc_gain", "lm_ppl"):
        lo, hi = out["intervals"][name]
        assert lo <= out["summary"][name] <= hi, name
    for base in ("recon_token_acc", "recon_exact", "probe_genre_f1", "probe_decode_acc", "probe_decode_acc_own"):
        assert out["summary"][f"{base}_gain"] == pytest.approx(out["summary"][base] - out["summary"][f"{base}_shuffled"])
    assert out["embedding_space"] == {"source": "interest_head", "width": 64, "comparable": True}
    assert "wrote" in r.stdout and "sink_mass" in r.stdout


@pytest.mark.slow
def test_real_capture_headlines_match_its_stats(captured_run):
    """The summary is computed from the capture, not made up: recompute two headlines by hand."""
    from safetensors.numpy import load_file

    run, _ = captured_run
    out = read_json(run / "analysis.json")
    st = load_file(str(run / "capture" / "stats.safetensors"))
    assert out["summary"]["sink_mass"] == pytest.approx(float(st["history.attn.first_mass"].mean()), rel=1e-6)
    pooled = st["history.attn.first_mass_sum"] / st["history.attn.rows"][0]
    assert [r["value"] for r in out["records"] if r["metric"] == "sink_mass" and r["set"] == "history_pooled"] == [
        pytest.approx(float(pooled.mean()), rel=1e-6)]
    hid = load_file(str(run / "capture" / "hidden.safetensors"))
    from karma_probe.analyzers.geometry import erank

    assert out["summary"]["erank"] == pytest.approx(erank(hid["interest"]), rel=1e-9)


@pytest.mark.slow
def test_metrics_subset_keeps_the_rest(captured_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(captured_run[0], run, symlinks=True)
    before = read_json(run / "analysis.json")
    r = cli(run, "--metrics", "erank,hr@10")
    assert r.returncode == 0, r.stderr
    after = read_json(run / "analysis.json")
    assert after["summary"] == before["summary"]  # same inputs, same numbers; nothing dropped
    assert len(after["records"]) == len(before["records"])
    # the kept metrics keep their analyzer seconds (the study's wall-time table sums them)
    kept = {m: s for m, s in before["analyzed"]["seconds"].items() if m not in ("erank", "hr@10")}
    assert kept and {m: after["analyzed"]["seconds"][m] for m in kept} == kept
    assert set(after["analyzed"]["seconds"]) == set(before["analyzed"]["seconds"])


@pytest.mark.slow
def test_base_model_has_no_reconstruction_path(tmp_path):
    from karma_probe.capture.run import CaptureOptions, create_base_run

    run = tmp_path / "base"
    create_base_run("tiny", run, CaptureOptions(probes=4, text_probes=2, full_maps=0, progress=False))
    r = cli(run, "--metrics", "recon_token_acc,recon_exact,aniso_cos,hr@10")
    assert r.returncode == 0, r.stderr
    out = read_json(run / "analysis.json")
    assert set(out["summary"]) == {"aniso_cos"} and set(out["higher_is_better"]) == {"aniso_cos"}
    # measured through a seeded random head of the tiny runs' width, and said so
    assert out["embedding_space"] == {"source": "random_projection", "width": 64, "comparable": True,
                                      "projection": {"from": 64, "to": 64, "seed": 0, "entries": "N(0, 1/to)",
                                                     "then": "L2 normalize"}}
    from safetensors.numpy import load_file

    from karma_probe.analyzers.geometry import aniso_cos
    from karma_probe.analyzers.space import projection

    raw = load_file(str(run / "capture" / "hidden.safetensors"))["interest"]
    Z = raw @ projection(64, 64).T
    assert out["summary"]["aniso_cos"] == pytest.approx(aniso_cos(Z), rel=1e-5)
    assert out["summary"]["aniso_cos"] != pytest.approx(aniso_cos(raw), rel=1e-3)
    assert "no reconstruction path" in out["absent"]["recon_token_acc"]
    assert "metrics.json" in out["absent"]["hr@10"]
    assert "absent" in r.stdout


def test_base_run_space_matches_the_trained_runs_width():
    from karma_probe.analyzers.space import space_for, trained_width

    assert trained_width("smollm2-135m") == 128 and trained_width("tiny") == 64
    smol = space_for("base", "smollm2-135m", 576)
    assert (smol.source, smol.width, smol.comparable, smol.matrix.shape) == ("random_projection", 128, True, (128, 576))
    X = np.random.default_rng(0).normal(size=(10, 576))
    Z = smol.apply(X)
    assert Z.shape == (10, 128) and np.allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(Z, space_for("base", "smollm2-135m", 576).apply(X))  # seeded: the same head every time
    assert space_for("base", "/some/local/model", 320).to_json() == {"source": "marker_state", "width": 320,
                                                                     "comparable": False}
    trained = space_for("karma", "smollm2-135m", 128)
    assert trained.apply(X[:, :128]).tolist() == X[:, :128].astype(np.float32).tolist()  # trained runs as they are


def test_fit_users_and_scored_users_are_disjoint(tmp_path, monkeypatch):
    """Fails on any overlap between the users the read-outs are fitted on and the users scored."""
    import random

    from karma_probe.analyzers.inputs import FIT_EXAMPLES, FIT_SEED

    run = tmp_path / "run"
    model = make_run(run)
    write_fake_capture(run, model, n=64)
    calls = []
    embed = RunInputs.embed_histories
    monkeypatch.setattr(RunInputs, "embed_histories", lambda self, ex, **kw: calls.append(len(ex)) or embed(self, ex, **kw))
    inputs = RunInputs(run, capture=Capture.load(run / "capture", run / "checkpoint"))
    scored = set(inputs.probe_users)
    fit = [ex.user for ex in inputs.fit_examples]
    assert len(scored) == 64 and len(fit) == len(set(fit)) == FIT_EXAMPLES
    assert not set(fit) & scored
    X, t = inputs.fit_split
    assert X.shape == (FIT_EXAMPLES, model.embed_dim) and t.tolist() == [ex.target for ex in inputs.fit_examples]
    # every history embedding went through the one funnel: the capture check, then the fit split
    assert calls == [2, FIT_EXAMPLES]
    # the recipe before issue 13 (same seed over every valid user) overlapped: this test has teeth
    valid = inputs.dataset.split().valid
    assert {valid[k].user for k in random.Random(FIT_SEED).sample(range(len(valid)), FIT_EXAMPLES)} & scored


def test_trajectory_over_checkpoints(fake_run, tmp_path):
    run = tmp_path / "traj"
    shutil.copytree(fake_run, run)
    from karma_probe.model.retriever import load_run_model

    model, _, _ = load_run_model(run)
    for step in (3, 5):
        with torch.no_grad():
            model.interest_head.weight.mul_(0.5)  # a visibly different checkpoint
        model.save(run / "checkpoints" / f"step-{step:06d}", {"step": step})
    from karma_probe.analyzers.run import analyze_run

    out = analyze_run(run, metrics="lm_ppl,aniso_cos,sink_mass,hr@10", all_checkpoints=True)
    assert read_json(run / "analysis.json")["trajectory"] == json.loads(json.dumps(out["trajectory"]))
    traj = out["trajectory"]
    assert [t["step"] for t in traj] == [3, 5]
    for t in traj:
        # each checkpoint is captured in memory: attention gets a curve too
        assert set(t["summary"]) == {"lm_ppl", "aniso_cos", "sink_mass"} and "in memory" in t["capture"]
        assert "metrics.json" in t["absent"]["hr@10"]
        assert 0 < t["summary"]["sink_mass"] < 1
    assert traj[0]["summary"]["lm_ppl"] == pytest.approx(out["summary"]["lm_ppl"])  # heads do not touch the LM
    assert traj[0]["summary"]["sink_mass"] == pytest.approx(traj[1]["summary"]["sink_mass"])  # nor the attention
    assert traj[0]["summary"]["aniso_cos"] != traj[1]["summary"]["aniso_cos"]  # but the interest head changed
    assert set(out["summary"]) == {"lm_ppl", "aniso_cos", "sink_mass", "hr@10"}


def test_a_checkpoints_own_capture_must_be_of_that_step(fake_run, tmp_path):
    run = tmp_path / "traj"
    shutil.copytree(fake_run, run)
    from karma_probe.model.retriever import load_run_model

    model, _, _ = load_run_model(run)
    model.save(run / "checkpoints" / "step-000003", {"step": 3})
    shutil.copytree(run / "capture", run / "checkpoints" / "step-000003" / "capture")  # a step-7 capture
    r = cli(run, "--all-checkpoints", "--metrics", "sink_mass")
    assert r.returncode == 2 and "captured at step 7, but" in r.stderr and "step-000003 is step 3" in r.stderr


# --------------------------------------------------------------------------- bad input


def _broken(fake_run, tmp_path, edit):
    run = tmp_path / "run"
    shutil.copytree(fake_run, run)
    edit(run)
    write_json(run / "analysis.json", {"previous": True})
    return run


def _manifest_edit(**changes):
    def edit(run):
        m = read_json(run / "capture" / "manifest.json")
        for k, v in changes.items():
            m[k] = {**m[k], **v}
        write_json(run / "capture" / "manifest.json", m)
    return edit


def _foreign_interest(run):
    from safetensors.numpy import load_file, save_file

    h = load_file(str(run / "capture" / "hidden.safetensors"))
    h["interest"] = h["interest"][::-1].copy()
    save_file(h, str(run / "capture" / "hidden.safetensors"))


@pytest.mark.parametrize("edit, args, message", [
    (lambda run: shutil.rmtree(run / "capture"), (), r"no capture here"),
    (_manifest_edit(model={"layers": 30, "width": 576}), (), r"capture is from another model .*layers 30 vs 2; width 576 vs 64"),
    (_manifest_edit(run={"step": 400}), (), r"captured at step 400, but .* is step 7"),
    pytest.param(_foreign_interest, ("--metrics", "lm_ppl,recon_token_acc"), r"not this checkpoint's", marks=pytest.mark.slow),
    (lambda run: None, ("--metrics", "sink_mass,erankk"), r"unknown metric\(s\) erankk; known: sink_mass, .*, mrr"),
    (lambda run: None, ("--all-checkpoints",), r"no intermediate checkpoints"),
    (lambda run: (run / "capture" / "stats.safetensors").write_bytes(b"\x00" * 20), (), r"unreadable capture stats"),
], ids=["no-capture", "other-model", "stale-step", "other-run", "unknown-metric", "no-checkpoints", "truncated"])
def test_bad_input_is_one_line_and_writes_nothing(fake_run, tmp_path, edit, args, message):
    import re

    run = _broken(fake_run, tmp_path, edit)
    r = cli(run, *args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert read_json(run / "analysis.json") == {"previous": True}  # the previous analysis survives


def test_absent_is_not_an_error_but_missing_key_is(fake_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(fake_run, run)
    (run / "metrics.json").unlink()
    with pytest.raises(Absent, match=r"no retrieval metrics for this checkpoint: \S+/metrics.json does not exist"):
        METRICS["mrr"](RunInputs(run))
    write_json(run / "metrics.json", {"test": {"hr@10": 0.1}})
    with pytest.raises(BadInput, match=r"test split has no 'mrr'"):
        METRICS["mrr"](RunInputs(run))


def test_auto_threads_leaves_busy_cores_alone(monkeypatch):
    import os

    from karma_probe.core.cpu import auto_threads

    for load, want in ((0.1, 2), (0.9, 1), (1.4, 1), (6.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert auto_threads(2) == want
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert auto_threads(8) == 8
