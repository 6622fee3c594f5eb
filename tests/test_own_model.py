"""Your own model as a first-class run: probes file, adapter, device and dtype, headline set, diagnose's verdicts.

Fast tier: tiny random Llama / Qwen2 directories saved with save_pretrained (tests/own_models.py),
captured in process. The end-to-end ``diagnose`` in a subprocess is in tests/test_diagnose.py (slow).
"""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from karma_probe.analyzers.run import analyze_run
from karma_probe.capture.probes import read_probes_file
from karma_probe.capture.run import CaptureOptions, create_base_run
from karma_probe.core.device import resolve
from karma_probe.core.errors import BadInput
from karma_probe.report.results import load_run
from karma_probe.rundir import read_json
from karma_probe.workflows.diagnose import compare, plan_models

from own_models import PROMPTS, save_own_models

CAPTURE_METRICS = "sink_mass,sink_rate,key_concentration,attn_entropy,massive_act,aniso_cos,erank,uniformity"


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    return save_own_models(tmp_path_factory.mktemp("own"))


def _run(own, out, *, dtype="float32", adapter=None, model="base", metrics=CAPTURE_METRICS):
    opts = CaptureOptions(probes=0, full_maps=0, progress=False, probes_file=str(own["prompts"]), dtype=dtype)
    create_base_run(str(own[model]), out, opts, dataset=None, adapter=adapter)
    analyze_run(out, metrics=metrics, threads=1, dtype=dtype)
    return read_json(out / "analysis.json")


# --------------------------------------------------------------------------- the probes file


def test_probes_file_plain_and_jsonl(tmp_path):
    plain = tmp_path / "p.txt"
    plain.write_text("first prompt\n\n  \nsecond prompt\r\n", encoding="utf-8")
    assert [p.text for p in read_probes_file(plain)] == ["first prompt", "second prompt"]
    assert {p.set for p in read_probes_file(plain)} == {"user"}
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"text": "one", "id": 1}\n\n{"text": "two"}\n', encoding="utf-8")
    assert [p.text for p in read_probes_file(jl)] == ["one", "two"]


@pytest.mark.parametrize("content, where", [('{"text": "ok"}\n\n{"text": broken}\n', ":3: not valid JSON"),
                                            ('{"text": "ok"}\n{"prompt": "x"}\n', ":2: expected an object"),
                                            ('["text"]\n', ":1: expected an object"),
                                            ("\n\n", "no prompts")])
def test_bad_probes_file_names_file_and_line(tmp_path, content, where):
    f = tmp_path / "p.jsonl"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(BadInput, match=f"p.jsonl{where}" if where.startswith(":") else where):
        read_probes_file(f)


def test_cli_bad_probes_file_is_one_line_exit_2(own, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "karma_probe", "capture", "--model", str(own["base"]), "--dataset", "none",
                        "--probes-file", str(f), "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert f"{f}:2: not valid JSON" in r.stderr and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- device and dtype


def test_device_resolution():
    assert resolve("cpu").device == "cpu" and resolve("cpu", "bfloat16").torch_dtype is torch.bfloat16
    want = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve("auto").device == want
    for name, ok in (("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available())):
        if not ok:
            with pytest.raises(BadInput, match=f"--device {name}: not available"):
                resolve(name)
    with pytest.raises(BadInput, match="--dtype"):
        resolve("cpu", "float64")


def test_fp32_and_bf16_captures_agree(own, tmp_path):
    """Both precisions produce every capture metric; bf16 weights and activations move the attention
    statistics (all in [0, 1]) by less than 0.02 and the geometry of the last-token states by less than
    10 % here: statistics are accumulated in float32 in both."""
    fp32 = _run(own, tmp_path / "fp32")
    bf16 = _run(own, tmp_path / "bf16", dtype="bfloat16")
    assert read_json(tmp_path / "bf16" / "capture" / "manifest.json")["placement"] == {"device": "cpu", "dtype": "bfloat16"}
    assert set(fp32["summary"]) == set(bf16["summary"]) == set(CAPTURE_METRICS.split(","))
    for m in ("sink_mass", "key_concentration", "attn_entropy", "sink_rate"):
        assert abs(fp32["summary"][m] - bf16["summary"][m]) < 0.02, m
    for m in ("massive_act", "erank"):
        assert math.isclose(fp32["summary"][m], bf16["summary"][m], rel_tol=0.1), m
    per = lambda a: {(r["layer"], r["head"]): r["value"] for r in a["records"]  # noqa: E731
                     if r["metric"] == "sink_mass" and r["set"] == "user" and r["head"] is not None}
    assert len(per(fp32)) == 2 * 4 and np.allclose(list(per(fp32).values()), list(per(bf16).values()), atol=0.02)


# --------------------------------------------------------------------------- a model without a dataset


def test_user_set_is_the_headline_of_a_model_without_a_dataset(own, tmp_path):
    a = _run(own, tmp_path / "run", metrics=None)
    cfg = read_json(tmp_path / "run" / "config.json")
    assert cfg["condition"] == "model" and cfg["train"]["dataset"] is None
    manifest = read_json(tmp_path / "run" / "capture" / "manifest.json")
    assert manifest["probes"]["user"]["texts"] == [p for p in PROMPTS if p]  # blank line skipped, order kept
    assert manifest["probes"]["history"]["count"] == 0
    assert a["headline_set"] == "user"
    cells = {(r["layer"], r["head"]) for r in a["records"] if r["metric"] == "attn_entropy" and r["set"] == "user"
             and r["head"] is not None}
    assert cells == {(l, h) for l in range(2) for h in range(4)}
    # every metric that needs no retriever head is measured; the rest is absent with its reason
    for m in ("sink_mass", "key_concentration", "massive_act", "aniso_cos", "erank", "lm_ppl", "fact_acc"):
        assert m in a["summary"] and m not in a["absent"], m
    assert "no reconstruction path" in a["absent"]["recon_token_acc"]
    assert "no dataset" in a["absent"]["probe_genre_f1"]
    assert "no retriever head" in a["absent"]["hr@10"]
    # the geometry headline is the last layer's last-token state of the user's prompts
    last = next(r["value"] for r in a["records"] if r["metric"] == "erank" and r["set"] == "user" and r["layer"] == 2)
    assert a["summary"]["erank"] == last
    run = load_run(tmp_path / "run")
    assert run.analysis.headline_set == "user" and run.analysis.by_layer_head("sink_mass").shape == (2, 4)


def test_adapter_is_merged_into_the_capture(own, tmp_path):
    """The adapter changes the model, so its capture differs from the base's; its checkpoint holds
    the merged weights, whose logits equal peft's adapted model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    plain = _run(own, tmp_path / "plain", metrics="attn_entropy")
    lora = _run(own, tmp_path / "lora", adapter=str(own["lora"]), metrics="attn_entropy")
    assert abs(plain["summary"]["attn_entropy"] - lora["summary"]["attn_entropy"]) > 1e-4
    assert read_json(tmp_path / "lora" / "config.json")["train"]["adapter"] == str(own["lora"].resolve())
    ids = torch.tensor([[1, 200, 300, 400, 500]])
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "lora" / "checkpoint").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(own["base"]), own["lora"]).eval()
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)


def test_missing_peft_is_one_clear_line(own, monkeypatch):
    from karma_probe.model.backbones import load_backbone

    monkeypatch.setitem(sys.modules, "peft", None)  # import peft → ImportError
    with pytest.raises(BadInput, match=r"pip install 'karma-probe\[adapter\]'"):
        load_backbone(str(own["base"]), adapter=str(own["lora"]))


# --------------------------------------------------------------------------- diagnose's plan and verdicts


def test_adapter_mapping(own):
    base, tuned, lora = (str(own[k]) for k in ("base", "tuned", "lora"))
    plan = plan_models(base, [tuned, lora])
    assert [(m.path, m.adapter, m.name) for m in plan] == [(base, None, "base"), (tuned, None, "tuned"),
                                                           (base, lora, "base+lora")]
    plan = plan_models(base, [tuned, base], adapters=["-", lora])
    assert [(m.adapter, m.name) for m in plan[1:]] == [(None, "tuned"), (lora, "base+lora")]
    with pytest.raises(BadInput, match="one adapter per TUNED_DIR"):
        plan_models(base, [tuned, lora], adapters=[lora])
    with pytest.raises(BadInput, match="is itself an adapter"):
        plan_models(base, [lora], adapters=[lora])
    with pytest.raises(BadInput, match="BASE_DIR must be the model"):
        plan_models(lora, [tuned])
    with pytest.raises(BadInput, match="given twice"):
        plan_models(base, [tuned, tuned])


def test_verdicts_paired_over_the_same_probes(own, tmp_path):
    """A model against itself: every difference is 0 with a zero-width paired interval (within
    noise); against another architecture the intervals are the paired replicates' percentiles."""
    _run(own, tmp_path / "a")
    _run(own, tmp_path / "b")
    _run(own, tmp_path / "t", model="tuned")
    a, b, t = (load_run(tmp_path / n) for n in "abt")
    same = compare(a, b)
    assert {e["metric"] for e in same} == set(CAPTURE_METRICS.split(","))
    for e in same:
        assert e["difference"] == 0 and e["ci_low"] == e["ci_high"] == 0 and e["verdict"] == "within noise", e
        assert e["basis"].startswith("paired bootstrap")
    other = {e["metric"]: e for e in compare(a, t)}
    raw = lambda n: read_json(tmp_path / n / "analysis.json")["bootstrap"]["sink_mass"]  # noqa: E731
    diff = np.array(raw("t")) - np.array(raw("a"))
    e = other["sink_mass"]
    assert np.isclose(e["ci_low"], np.quantile(diff, 0.025)) and np.isclose(e["ci_high"], np.quantile(diff, 0.975))
    assert e["raw_verdict"] == ("differs" if e["ci_low"] > 0 or e["ci_high"] < 0 else "within noise")
    # Holm over this comparison's metrics: a corrected "differs" needs the raw one, never the reverse
    assert e["holm"]["m"] == len(other) and e["holm"]["level"] >= 0.95
    assert e["verdict"] in ("differs", "within noise") and (e["verdict"] != "differs" or e["raw_verdict"] == "differs")
    if e["verdict"] == "differs":
        assert e["direction"] == ("better" if e["difference"] < 0 else "worse")  # sink_mass: lower is better
    # each model its own group (named by its directory), never averaged with another model as seeds
    from karma_probe.report import check
    from karma_probe.report import study

    assert {g: [r.name for r in rs] for g, rs in study.by_condition([a, t, b]).items()} == {"base": ["a", "b"],
                                                                                           "tuned": ["t"]}
    with pytest.raises(BadInput, match="must be seeds of one model, preset and condition"):
        check.baseline_from_runs([a, t])


def test_user_set_beside_history_probes_keeps_history_the_headline(own, tmp_path):
    """With a dataset, the user's prompts are a third set beside history and text: per (layer, head)
    records of their own, while the headline and ``by_layer_head`` stay on the history probes."""
    opts = CaptureOptions(probes=4, full_maps=0, progress=False, probes_file=str(own["prompts"]))
    create_base_run("tiny", tmp_path / "run", opts, dataset="ml-100k")
    a = analyze_run(tmp_path / "run", metrics="sink_mass,erank", threads=1)
    assert a["headline_set"] == "history"
    heads = lambda s: {(r["layer"], r["head"]): r["value"] for r in a["records"]  # noqa: E731
                       if r["metric"] == "sink_mass" and r["set"] == s and r["head"] is not None}
    assert len(heads("history")) == len(heads("user")) == 2 * 4 and heads("history") != heads("user")
    run = load_run(tmp_path / "run")
    matrix = run.analysis.by_layer_head("sink_mass")
    assert all(matrix[l, h] == v for (l, h), v in heads("history").items())
    assert a["summary"]["erank"] == next(r["value"] for r in a["records"] if r["metric"] == "erank" and r["set"] == "interest")
    assert {r["set"] for r in a["records"] if r["metric"] == "erank"} == {"interest", "items", "marker", "user"}


def test_diagnose_verdict_is_holm_corrected():
    """A raw 95 % 'differs' that Holm's step-down retains is reported 'within noise (raw: differs)'."""
    import karma_probe.workflows.diagnose as d

    ps = (0.001, 0.04, 0.5)
    entries = [{"metric": f"m{i}", "higher_is_better": True, "base": 0.0, "tuned": 1.0, "difference": 1.0,
                "ci_low": 0.1, "ci_high": 1.9, "raw_verdict": "differs" if p < 0.05 else "within noise", "p": p,
                "seeds": None, "basis": "x"} for i, p in enumerate(ps)]
    from karma_probe.report import stats
    from karma_probe.report import study

    # an interval that excludes 0 exactly when its level's alpha is above the p-value
    ats = [lambda level, p=p: stats.Interval(1.0, 0.1 if 1 - level > p else -0.2, 1.9, 10, "x", level, p) for p in ps]
    study.holm_correct(entries, ats, family="f", words=lambda ci, _one: d._word(ci))
    # m = 3: 0.001 < 0.05/3 is rejected; 0.04 > 0.05/2 is retained (raw 95 %: differs); the step-down stops
    assert [e["holm"]["status"] for e in entries] == ["differs", "within noise", "within noise"]
    for e in entries:
        e["verdict"] = e["holm"]["status"]
        e["direction"] = "better" if e["verdict"] == "differs" else None
    rows = d.diagnosis_rows({"t": entries})
    assert [r[-1] for r in rows] == ["differs: better", "within noise (raw: differs)", "within noise"]
