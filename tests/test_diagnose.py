"""``karma-probe diagnose`` end to end, as a user would run it on their own checkpoints (issue 24's done-when).

Two tiny random models of different architectures saved with save_pretrained (a Llama base, a Qwen2
"fine-tune") and a LoRA adapter on the base, a plain-text prompts file, ``python -m karma_probe
diagnose`` in a subprocess: the report, summary.json, a verdict per metric for each tuned model,
the user probe set in analysis.json, retriever-only metrics absent with a reason, JUnit XML; then
the same command again resumes (captures and analyses are kept).
"""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from own_models import save_own_models

pytestmark = pytest.mark.slow

RETRIEVER_ONLY = ("recon_token_acc", "recon_exact", "probe_genre_f1", "probe_decode_acc", "hr@10", "mrr")
NEEDS_NO_HEAD = ("sink_mass", "sink_rate", "key_concentration", "attn_entropy", "massive_act", "aniso_cos", "erank",
                 "top1_var", "isotropy", "uniformity", "lm_ppl", "fact_acc")


def diagnose(*args):
    return subprocess.run([sys.executable, "-m", "karma_probe", "diagnose", *map(str, args), "--threads", "1",
                           "--no-progress"], capture_output=True, text=True, timeout=600)


def test_diagnose_end_to_end(tmp_path):
    own = save_own_models(tmp_path / "models")
    out = tmp_path / "reports" / "mine"
    args = (own["base"], own["tuned"], own["lora"], "--probes-file", own["prompts"], "-o", out,
            "--junit", tmp_path / "junit.xml")
    r = diagnose(*args)
    assert r.returncode == 0, r.stderr
    assert (out / "report.pdf").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["base"]["name"] == "base" and [t["name"] for t in summary["tuned"]] == ["tuned", "base+lora"]
    assert summary["tuned"][1]["adapter"] == str(own["lora"].resolve())
    assert summary["headline_set"] == "user" and "Holm" in summary["correction"]
    for name in ("tuned", "base+lora"):
        rows = {e["metric"]: e for e in summary["comparisons"][name]}
        assert set(NEEDS_NO_HEAD) <= set(rows), name  # a verdict for every metric that needs no retriever head
        for e in rows.values():
            assert e["verdict"] in ("differs", "within noise", "no CI")
            assert e["difference"] == pytest.approx(e["tuned"] - e["base"])
            if e["ci_low"] is not None:
                assert e["ci_low"] <= e["ci_high"] and e["verdict"] != "no CI"
                # the raw word reads the raw interval; the corrected one needs its Holm interval to
                # exclude 0 too (and may stay "within noise" where the step-down stopped earlier)
                assert (e["raw_verdict"] == "differs") == (e["ci_low"] > 0 or e["ci_high"] < 0)
                h = e["holm"]
                if e["verdict"] == "differs":
                    assert e["raw_verdict"] == "differs" and (h["ci_low"] > 0 or h["ci_high"] < 0)
        assert rows["sink_mass"]["basis"].startswith("paired bootstrap")  # same prompts: paired replicates
    for run in ("base", "tuned", "base+lora"):
        analysis = json.loads((out / "runs" / run / "analysis.json").read_text())
        assert {r["set"] for r in analysis["records"] if r["metric"] == "sink_mass"} >= {"user", "text"}
        assert any(r["set"] == "user" and r["head"] is not None for r in analysis["records"])
        for m in RETRIEVER_ONLY:
            assert m not in analysis["summary"] and analysis["absent"][m], (run, m)
        assert summary["absent"][run] == analysis["absent"]
    pdf_text = _pdf_text(out / "report.pdf")
    assert "Diagnosis: each tuned model vs the base model (base)" in pdf_text and "base+lora" in pdf_text
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    assert len(list(cases)) == sum(len(v) for v in summary["comparisons"].values())
    # the stdout table: one line per (tuned model, metric)
    assert r.stdout.count(" vs base:") == 2 and "wrote" in r.stdout

    # resumable: the same command keeps every capture and analysis
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/analysis.json")}
    again = diagnose(*args)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def _pdf_text(path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(path).pages[:2])


def test_diagnose_bad_input_is_one_line(tmp_path):
    own = save_own_models(tmp_path / "models")
    for args, message in (((own["base"], "--probes-file", own["prompts"], "-o", tmp_path / "o"), "TUNED_DIR"),
                          ((own["base"], tmp_path / "nope", "-o", tmp_path / "o"), "not a directory"),
                          ((own["base"], own["tuned"], "--adapter", own["lora"], own["lora"], "-o", tmp_path / "o"),
                           "one adapter per TUNED_DIR"),
                          ((own["base"], own["tuned"], "--device", "cuda", "-o", tmp_path / "o"), "--device cuda")):
        if "cuda" in message:
            import torch

            if torch.cuda.is_available():
                continue
        r = diagnose(*args)
        assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and message in r.stderr, (args, r.stderr)
    assert not (tmp_path / "o").exists()
    help_ = subprocess.run([sys.executable, "-m", "karma_probe", "diagnose", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "examples:" in help_.stdout and "--adapter" in help_.stdout
