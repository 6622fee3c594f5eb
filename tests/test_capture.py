"""Capture: backend parity, streaming = full, merge = one capture, hooks always removed, bad input.

All on the tiny random-init Llama (float32, GQA 4 query / 2 KV heads) except one SmolLM2 test.
"""

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from karma_probe.capture import hooks as H
from karma_probe.capture.backends import TorchBackend, TransformerLensBackend
from karma_probe.capture.probes import DEFAULT_TEXT_PROBES, build_probe_set, general_passages, shard
from karma_probe.capture.reducers import AttentionReducer, ResidualReducer, merge, top_count, top_share
from karma_probe.capture.run import CaptureOptions, capture_model
from karma_probe.capture.writer import merge_captures
from karma_probe.core.errors import BadInput
from karma_probe.data.dataset import load_dataset
from karma_probe.data.prompts import INTEREST_MARKER
from karma_probe.model.backbones import TINY_VOCAB, load_backbone
from karma_probe.rundir.capture import read_capture, write_capture

TEXTS = [
    "A user watched these movies, oldest first:\n- Toy Story (1995) | Animation\n- Heat (1995) | Action\nNext:",
    "Paris is the capital of France.",  # shorter: right padding in the same batch
    "Water boils at 100 degrees Celsius at sea level, and at a lower temperature on a mountain.",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny():
    """The same random-init weights twice: the capture model keeps SDPA, the reference runs eager."""
    model, tok = load_backbone("tiny", attn_implementation="sdpa")
    eager, _ = load_backbone("tiny", attn_implementation="eager")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), eager.state_dict().values()))
    return model, eager, tok


@pytest.fixture(scope="module")
def batch(tiny):
    _, _, tok = tiny
    enc = tok(TEXTS, add_special_tokens=False, return_tensors="pt", padding=True)
    assert tok.padding_side == "right" and enc.attention_mask.sum(1).min() < enc.attention_mask.shape[1]
    return enc.input_ids, enc.attention_mask


@pytest.fixture(scope="module")
def reference(tiny, batch):
    _, eager, _ = tiny
    with torch.no_grad():
        return eager(input_ids=batch[0], attention_mask=batch[1], output_attentions=True, output_hidden_states=True)


class Recorder:
    """A sink that reassembles the chunks into full (L, B, H, T, T) maps and keeps the residual stream."""

    def __init__(self, L, B, Hh, T):
        self.P = torch.full((L, B, Hh, T, T), float("nan"))
        self.hidden = {}

    def attention_rows(self, layer, probs, start, entropy=None):
        C, Tk = probs.shape[2], probs.shape[3]
        if entropy is not None:  # the attention function's entropies are the rows' own
            torch.testing.assert_close(entropy, -torch.special.xlogy(probs, probs).sum(-1), atol=1e-5, rtol=0)
        self.P[layer, :, :, start:start + C, :Tk] = probs
        self.P[layer, :, :, start:start + C, Tk:] = 0.0  # keys a chunk leaves out are in the future

    def residual(self, index, hidden):
        self.hidden[index] = hidden.detach().clone()


def no_hooks(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# --------------------------------------------------------------------------- probes


def test_general_passages():
    ps = general_passages()
    assert len(ps) >= 40  # lm_ppl's bootstrap over passages needs enough of them (issue 26)
    assert all(p and "\n" not in p and p.count(". ") >= 1 for p in ps)
    assert len(set(ps)) == len(ps)


def test_probe_set_is_seeded_and_ends_in_marker():
    ds = load_dataset("synthetic")
    a, b = build_probe_set(ds, 12, seed=0), build_probe_set(ds, 12, seed=0)
    assert a == b and len(a.history) == 12
    # the capture's text probes: the first DEFAULT_TEXT_PROBES passages (lm_ppl reads them all)
    assert [p.text for p in a.text] == general_passages()[:DEFAULT_TEXT_PROBES] and DEFAULT_TEXT_PROBES < len(general_passages())
    assert [p.text for p in build_probe_set(ds, 0, n_text=None).text] == general_passages()
    assert CaptureOptions().text_probes == DEFAULT_TEXT_PROBES
    assert [p.user for p in build_probe_set(ds, 12, seed=1).history] != [p.user for p in a.history]
    test = {e.user: e for e in ds.split().test}
    for p in a.history:
        assert p.text.endswith(INTEREST_MARKER) and p.target == test[p.user].target
        assert p.text.count("\n- ") <= 6  # default max items
    assert build_probe_set(ds, 3, max_items=2).history[0].text.count("\n- ") == 2
    halves = shard(a, 0, 2), shard(a, 1, 2)
    assert halves[0].history + halves[1].history == a.history and halves[0].text + halves[1].text == a.text
    with pytest.raises(BadInput, match="empty probe set"):
        build_probe_set(ds, 0, n_text=0)


# --------------------------------------------------------------------------- parity with the HF model


@pytest.mark.parametrize("backend", ["torch", "tl"])
@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_backend_parity_with_hf_eager(tiny, batch, reference, backend, chunk):
    model, _, tok = tiny
    ids, mask = batch
    lengths = mask.sum(1)
    L, Hh = model.config.num_hidden_layers, model.config.num_attention_heads
    be = (TorchBackend(model, chunk_size=chunk) if backend == "torch"
          else TransformerLensBackend(model, tok, chunk_size=chunk))
    rec = Recorder(L, *ids.shape[:1], Hh, ids.shape[1])
    be.run(ids, mask, rec)
    for layer in range(L):
        for b, n in enumerate(lengths.tolist()):
            got, want = rec.P[layer, b, :, :n, :n], reference.attentions[layer][b, :, :n, :n]
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    for i in range(L + 1):
        # HF's last hidden_states entry is after the final norm; the capture keeps the residual stream.
        got = rec.hidden[i] if i < L else model.model.norm(rec.hidden[i])
        for b, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(got[b, :n], reference.hidden_states[i][b, :n], atol=1e-5, rtol=0)
    # neither backend leaves anything behind on the caller's model
    assert no_hooks(model) and model.config._attn_implementation == "sdpa"
    assert type(model.model.layers[0].self_attn).__name__ == "LlamaAttention"


# --------------------------------------------------------------------------- reducers


def random_batch(lengths, L=3, Hh=2, seed=0):
    """Causal attention maps for right-padded probes; padded rows hold garbage the reducers must drop."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    logits = torch.randn(L, B, Hh, T, T, generator=g) * 3
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    P = torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1)
    for b, n in enumerate(lengths):
        P[:, b, :, n:, :] = torch.rand(L, Hh, T - n, T, generator=g)  # padded query rows: not a distribution
    return P  # (L, B, H, T, T)


def reference_stats(P, lengths, max_len):
    """The statistics straight from their definitions, one full matrix at a time, in float64."""
    L, _, Hh = P.shape[:3]
    out = {"first": torch.zeros(L, Hh, dtype=torch.float64), "ent": torch.zeros(L, Hh, dtype=torch.float64),
           "rec": torch.zeros(L, Hh, max_len, dtype=torch.float64), "pos": torch.zeros(max_len, dtype=torch.float64),
           "conc": torch.zeros(L, Hh, dtype=torch.float64), "rows": 0, "probes": len(lengths),
           "per_first": [], "per_ent": [], "per_conc": []}  # per probe: (L, H) each
    for b, n in enumerate(lengths):
        M = P[:, b, :, :n, :n].double()  # (L, H, n, n)
        first = M[:, :, 1:, 0].sum(-1)
        out["first"] += first
        ent = torch.zeros(L, Hh, dtype=torch.float64)
        for i in range(1, n):
            row = M[:, :, i, : i + 1]
            ent += -(row * row.log()).nan_to_num(0.0).sum(-1) / math.log(i + 1)
        out["ent"] += ent
        r = M.sum(2)  # (L, H, n): r_j = Σ_{i>=j} P[i, j]
        out["rec"][:, :, :n] += r
        out["pos"][:n] += 1
        k = math.ceil(5 * (n - 1) / 100)
        conc = r[..., 1:].sort(-1, descending=True).values[..., :k].sum(-1) / r[..., 1:].sum(-1)
        out["conc"] += conc
        out["rows"] += n - 1
        out["per_first"].append(first / (n - 1))
        out["per_ent"].append(ent / (n - 1))
        out["per_conc"].append(conc)
    return out


def reduce(P, lengths, max_len, chunk, full_keys=False):
    red = AttentionReducer(P.shape[0], P.shape[2], max_len)
    red.begin_batch(torch.tensor(lengths))
    T = P.shape[-1]
    for layer in range(P.shape[0]):
        for s in range(0, T, chunk):
            e = min(s + chunk, T)
            red.add_rows(layer, P[layer, :, :, s:e, : (T if full_keys else e)], s)
    red.end_batch()
    return red.state()


@pytest.mark.parametrize("chunk", [1, 3, 7, 16, 40])
@pytest.mark.parametrize("full_keys", [False, True], ids=["torch-chunks", "tl-chunks"])
def test_streaming_equals_full(chunk, full_keys):
    lengths = [23, 9, 17, 2]  # T = 23: chunk 3, 7 and 16 do not divide it
    P = random_batch(lengths)
    ref = reference_stats(P, lengths, max_len=30)
    got = reduce(P, lengths, 30, chunk, full_keys)
    close = dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["attn.first_mass_sum"].double(), ref["first"], **close)
    torch.testing.assert_close(got["attn.entropy_sum"].double(), ref["ent"], **close)
    torch.testing.assert_close(got["attn.key_received_sum"].double(), ref["rec"], **close)
    torch.testing.assert_close(got["attn.key_positions"].double(), ref["pos"])
    torch.testing.assert_close(got["attn.key_conc_sum"].double(), ref["conc"], **close)
    assert got["attn.rows"].item() == ref["rows"] and got["attn.probes"].item() == ref["probes"]
    # per probe: each probe's own row means and share, in probe order
    torch.testing.assert_close(got["attn.first_mass"].double(), torch.stack(ref["per_first"]), **close)
    torch.testing.assert_close(got["attn.entropy"].double(), torch.stack(ref["per_ent"]), **close)
    torch.testing.assert_close(got["attn.key_conc"].double(), torch.stack(ref["per_conc"]), **close)
    assert got["attn.probe_rows"].tolist() == [n - 1 for n in lengths]
    # and they add up to the pooled sums
    rows = got["attn.probe_rows"].double()[:, None, None]
    torch.testing.assert_close((got["attn.first_mass"].double() * rows).sum(0), got["attn.first_mass_sum"].double(), **close)
    torch.testing.assert_close(got["attn.key_conc"].double().sum(0), got["attn.key_conc_sum"].double(), **close)


def test_known_answers():
    n, L, Hh = 21, 1, 1
    sink = torch.zeros(L, 1, Hh, n, n)
    sink[..., 0] = 1.0  # all attention on token 0
    s = reduce(sink, [n], n, 4)
    assert s["attn.first_mass_sum"].item() == n - 1 and s["attn.rows"].item() == n - 1
    assert s["attn.entropy_sum"].item() == 0.0
    assert s["attn.key_conc_sum"].item() == 0.0  # nothing left to concentrate
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    s = reduce(uniform.expand(L, 1, Hh, n, n).clone(), [n], n, 6)
    assert s["attn.first_mass_sum"].item() == pytest.approx(sum(1 / (i + 1) for i in range(1, n)), rel=1e-6)
    assert s["attn.entropy_sum"].item() == pytest.approx(n - 1, rel=1e-6)  # H = log(i+1): normalized 1 per row
    r = [sum(1 / (i + 1) for i in range(j, n)) for j in range(n)]
    assert s["attn.key_received_sum"][0, 0].tolist() == pytest.approx(r, rel=1e-6)
    k = top_count(n - 1)  # ⌈5% of 20⌉ = 1: the largest r_j (j >= 1) is r_1
    assert k == 1 and s["attn.key_conc_sum"].item() == pytest.approx(r[1] / sum(r[1:]), rel=1e-6)
    assert [top_count(m) for m in (1, 19, 20, 21, 40, 41)] == [1, 1, 1, 2, 2, 3]
    # top_share ignores positions past a probe's length
    share = top_share(torch.tensor([[[5.0, 1.0, 2.0, 0.0]]]), torch.tensor([3]))
    assert share.item() == pytest.approx(2.0 / 3.0)


def test_massive_ratio_known_answer():
    h = torch.ones(1, 4, 6)
    h[0, 2, 3] = -50.0
    h[0, 3] = 1000.0  # a padded position: ignored
    red = ResidualReducer(1)
    red.add(0, h, torch.tensor([3]))
    assert red.state()["resid.massive_sum"].item() == 50.0 == red.state()["resid.massive_max"].item()
    red.add(0, torch.ones(2, 4, 6), torch.tensor([4, 2]))  # a second batch: two probes of ratio 1
    assert red.state()["resid.massive"].tolist() == [[50.0], [1.0], [1.0]]  # (N, L+1), probe order


def test_merge_of_shards_equals_one_reduction():
    la, lb = [11, 4], [15, 9, 3]
    Pa, Pb = random_batch(la, seed=1), random_batch(lb, seed=2)
    a, b = reduce(Pa, la, 12, 5), reduce(Pb, lb, 16, 4)  # different max_len: merge pads positions
    both = AttentionReducer(3, 2, 16)
    for P, lengths in ((Pa, la), (Pb, lb)):
        both.begin_batch(torch.tensor(lengths))
        for layer in range(3):
            both.add_rows(layer, P[layer], 0)
        both.end_batch()
    merged, want = merge(a, b), both.state()
    assert merged.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(merged[k], want[k], rtol=1e-5, atol=1e-6)
    assert merged["attn.first_mass"].shape == (5, 3, 2)  # per-probe rows concatenate: a's probes, then b's
    assert merged["attn.probe_rows"].tolist() == [10, 3, 14, 8, 2]
    ra, rb = ResidualReducer(2), ResidualReducer(2)
    ra.add(0, torch.randn(2, 5, 4), torch.tensor([5, 3]))
    rb.add(0, torch.randn(1, 5, 4), torch.tensor([4]))
    m = merge({f"x.{k}": v for k, v in ra.state().items()}, {f"x.{k}": v for k, v in rb.state().items()})
    assert m["x.resid.massive_max"][0] == max(ra.state()["resid.massive_max"][0], rb.state()["resid.massive_max"][0])
    with pytest.raises(BadInput, match="shapes"):
        merge(a, {"attn.first_mass_sum": torch.zeros(4, 4)})


def test_reducer_refuses_a_layer_that_did_not_report():
    red = AttentionReducer(2, 1, 8)
    red.begin_batch(torch.tensor([5]))
    red.add_rows(0, torch.tril(torch.ones(1, 1, 5, 5)) / 5, 0)
    with pytest.raises(RuntimeError, match=r"layers \[1\]"):
        red.end_batch()


# --------------------------------------------------------------------------- hooks


class Boom:
    def __init__(self, where):
        self.where = where

    def attention_rows(self, layer, probs, start, entropy=None):
        if self.where == "attn" and layer == 1:
            raise RuntimeError("boom")

    def residual(self, index, hidden):
        if self.where == "resid" and index == 0:
            raise RuntimeError("boom")


@pytest.mark.parametrize("where", ["attn", "resid"])
def test_hooks_removed_when_forward_raises(tiny, batch, where):
    model, _, _ = tiny
    ids, mask = batch
    assert no_hooks(model)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    with pytest.raises(RuntimeError, match="boom"):
        TorchBackend(model, chunk_size=4).run(ids, mask, Boom(where))
    assert no_hooks(model)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="inside"):
        with H.hooked([(model.model.embed_tokens, "forward", lambda *a: None)]):
            raise ValueError("inside the block")
    assert no_hooks(model)


# --------------------------------------------------------------------------- session, run, writer


@pytest.fixture(scope="module")
def kmodel():
    from karma_probe.model.retriever import base_model

    return base_model("tiny")


def _capture(kmodel, **kw):
    opts = CaptureOptions(**{"probes": 10, "text_probes": 5, "max_len": 96, "full_maps": 3, "batch_size": 4,
                             "chunk_size": 7, "progress": False, **kw})
    from karma_probe.data.dataset import load_dataset

    return capture_model(kmodel, kmodel.tokenizer, dataset=load_dataset("synthetic"), max_items=4, max_target_tokens=None, opts=opts,
                         run={"name": "t", "condition": "base"})


def test_capture_model_against_hf_and_retriever(kmodel):
    cap = _capture(kmodel)
    model = kmodel.backbone
    L, Hh = model.config.num_hidden_layers, model.config.num_attention_heads
    hist = cap.manifest["probes"]["history"]
    lengths = hist["lengths"]
    s, maps, hidden = cap.torch("stats"), cap.torch("maps"), cap.torch("hidden")  # storage is numpy
    # every real row of P sums to 1, so Σ_j r_j = number of tokens, per layer and head
    torch.testing.assert_close(s["history.attn.key_received_sum"].sum(-1), torch.full((L, Hh), float(sum(lengths))))
    assert s["history.attn.key_positions"][0].item() == len(lengths) == s["history.attn.probes"].item()
    assert s["history.attn.rows"].item() == sum(n - 1 for n in lengths)
    assert s["text.attn.probes"].item() == 5
    # full maps: the first K history probes, equal to the model's own eager attention
    assert cap.manifest["full_maps"] == [0, 1, 2]
    model.set_attn_implementation("eager")
    try:
        for k in range(3):
            ids = maps[f"probe{k}.input_ids"]
            with torch.no_grad():
                att = model(input_ids=ids[None], output_attentions=True).attentions
            torch.testing.assert_close(maps[f"probe{k}.attn"], torch.stack([a[0] for a in att]), atol=1e-5, rtol=0)
    finally:
        model.set_attn_implementation("sdpa")
    # marker hidden state, after the final norm, is the base model's interest embedding
    mh = hidden["marker_hidden"]
    assert mh.shape == (10, L + 1, model.config.hidden_size) and hist["truncated"] == 0
    with torch.no_grad():
        torch.testing.assert_close(F.normalize(model.model.norm(mh[:, L]), dim=-1), hidden["interest"], atol=1e-5, rtol=0)
    assert hidden["items"].shape == (len(load_dataset("synthetic").items), model.config.hidden_size)
    assert hidden["targets"].tolist() == hist["targets"]


def test_shards_merge_to_one_capture(kmodel, tmp_path):
    whole = _capture(kmodel)
    for i in range(2):
        write_capture(tmp_path / f"s{i}", _capture(kmodel, shard=(i, 2)))
    r = subprocess.run([sys.executable, "-m", "karma_probe", "capture", "--merge", str(tmp_path / "m"),
                        str(tmp_path / "s0"), str(tmp_path / "s1")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    merged = read_capture(tmp_path / "m")
    assert merged.stats.keys() == whole.stats.keys()
    for k in whole.stats:
        torch.testing.assert_close(merged.stats[k], whole.stats[k], rtol=1e-5, atol=1e-5)
    assert merged.maps.keys() == whole.maps.keys()
    for k in whole.maps:
        torch.testing.assert_close(merged.maps[k], whole.maps[k], rtol=0, atol=1e-6)
    for k in whole.hidden:
        torch.testing.assert_close(merged.hidden[k], whole.hidden[k], rtol=0, atol=1e-5)
    assert merged.manifest["probes"]["history"]["users"] == whole.manifest["probes"]["history"]["users"]
    with pytest.raises(BadInput, match="overlapping shards"):
        merge_captures([read_capture(tmp_path / "s0"), read_capture(tmp_path / "s0")])  # same full maps
    with pytest.raises(BadInput, match="share history probes"):
        merge_captures([read_capture(tmp_path / "s1"), read_capture(tmp_path / "s1")])  # no maps, same users


def test_tl_and_torch_captures_agree(kmodel):
    a, b = _capture(kmodel, probes=4, text_probes=2), _capture(kmodel, probes=4, text_probes=2, backend="tl")
    for k in a.stats:
        torch.testing.assert_close(a.stats[k], b.stats[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.hidden["marker_hidden"], b.hidden["marker_hidden"], rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- command line and bad input


def cli(*args):
    return subprocess.run([sys.executable, "-m", "karma_probe", "capture", *map(str, args), "--no-progress"],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A reference run of the tiny backbone on the synthetic dataset, created through the command line."""
    out = tmp_path_factory.mktemp("runs") / "base"
    r = cli("--model", "tiny", "--dataset", "synthetic", "--out", out, "--probes", 6, "--text-probes", 3,
            "--max-len", 40, "--full-maps", 2)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
def test_cli_reference_run_follows_the_contract(base_run):
    meta = json.loads((base_run / "config.json").read_text())
    assert meta["condition"] == "base" and meta["train"]["model"] == "tiny"
    assert json.loads((base_run / "checkpoint" / "state.json").read_text())["step"] == 0
    cap = read_capture(base_run)
    m = cap.manifest
    assert m["schema"] == "karma_probe.capture/1" and m["backend"] == "torch"
    assert m["model"] == {"architecture": "LlamaForCausalLM", "layers": 2, "heads": 4, "kv_heads": 2, "width": 64,
                          "vocab": TINY_VOCAB}
    assert (m["probes"]["seed"], m["probes"]["count"], m["probes"]["max_len"]) == (0, 9, 40)
    # built like the tiny runs' inputs: their interface and number of history items; the step-0 model
    from karma_probe.core.config import PRESETS

    assert m["probes"]["max_items"] == PRESETS["tiny"].max_history == 50
    assert m["interface"] == PRESETS["tiny"].interface == "continuous"
    assert (base_run / "checkpoint" / "heads.safetensors").is_file()
    L, Hh, T, N = 2, 4, 40, 6
    shapes = {"attn.first_mass_sum": [L, Hh], "attn.rows": [1], "attn.entropy_sum": [L, Hh],
              "attn.key_received_sum": [L, Hh, T], "attn.key_positions": [T], "attn.key_conc_sum": [L, Hh],
              "attn.probes": [1], "resid.massive_sum": [L + 1], "resid.massive_max": [L + 1]}
    per_probe = {"attn.first_mass": [L, Hh], "attn.entropy": [L, Hh], "attn.key_conc": [L, Hh], "attn.probe_rows": [],
                 "resid.massive": [L + 1]}
    counts = {"history": N, "text": m["probes"]["text"]["count"]}
    want = {f"{s}.{k}": v for s in ("history", "text") for k, v in shapes.items()}
    want |= {f"{s}.{k}": [counts[s], *v] for s in ("history", "text") for k, v in per_probe.items()}
    assert {k: list(v.shape) for k, v in cap.stats.items()} == want
    assert all(v.dtype == torch.float32 for v in cap.torch("stats").values())
    n0 = m["probes"]["history"]["lengths"][0]
    assert list(cap.maps["probe0.attn"].shape) == [L, Hh, n0, n0] and cap.torch("maps")["probe0.input_ids"].dtype == torch.int64
    # a continuous run's history probes are its items, one input embedding each; maps labelled by title
    items = m["probes"]["history"]["items"][0]
    # (after the first-token prefix: BOS and "User history:" as codes -(id + 1), labelled by their tokens)
    from karma_probe.model.backbones import load_backbone
    from karma_probe.data.prompts import history_codes, history_prefix_ids

    prefix = history_prefix_ids(load_backbone("tiny")[1], "bos")
    ids = cap.maps["probe0.input_ids"].tolist()
    assert ids == history_codes(prefix, items[-(40 - len(prefix)):]) and len(m["map_labels"]["probe0"]) == n0
    assert {k: list(v.shape) for k, v in cap.hidden.items()} == {
        "marker_hidden": [N, L + 1, 64], "interest": [N, 64], "items": [120, 64], "targets": [N],
        "text_hidden": [counts["text"], L + 1, 64]}  # the passages' last-token states, every layer
    # and the run can be captured again as a run (through the retriever's load_run_model)
    r = cli(base_run, "--probes", 2, "--text-probes", 0, "--max-len", 32, "--capture-dir", base_run / "again")
    assert r.returncode == 0, r.stderr
    assert read_capture(base_run / "again").manifest["probes"]["count"] == 2


def _bad(run_dir, *args, match):
    before = sorted(p.name for p in run_dir.iterdir())
    r = cli(run_dir, *args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert match in r.stderr, r.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing half-written next to the run's files
    return r


@pytest.mark.slow
def test_bad_input_missing_and_truncated_checkpoint(base_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run, symlinks=True)
    shutil.rmtree(run / "capture")
    weights = run / "checkpoint" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _bad(run, match="truncated or corrupt")
    assert not (run / "capture").exists()
    shutil.rmtree(run / "checkpoint")
    _bad(run, match="checkpoint not found")


@pytest.mark.slow
def test_bad_input_tokenizer_from_another_model_and_empty_probe_set(base_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run, symlinks=True)
    old = read_capture(run).torch("stats")
    _bad(run, "--probes", 0, "--text-probes", 0, match="empty probe set")
    # a failed recapture leaves the previous capture as it was
    assert all(torch.equal(old[k], v) for k, v in read_capture(run).torch("stats").items())
    from transformers import LlamaForCausalLM

    from karma_probe.model.backbones import tiny_config

    small = LlamaForCausalLM(tiny_config(1000))  # another model's vocabulary
    small.save_pretrained(run / "checkpoint")  # the tiny tokenizer (4096 tokens) stays next to it
    _bad(run, match="tokenizer does not match the model")


@pytest.mark.slow
def test_bad_options(base_run):
    _bad(base_run, "--shard", "2/2", match="--shard 2/2")
    _bad(base_run, "--max-len", 1, match="--max-len")
    r = cli("--merge", base_run / "m", base_run)
    assert r.returncode == 2 and "at least two" in r.stderr
    r = cli("--merge", base_run, base_run, base_run / "again")  # OUT is a run directory, not a capture
    assert r.returncode == 2 and "not a capture directory" in r.stderr
    assert (base_run / "checkpoint" / "config.json").is_file()


# --------------------------------------------------------------------------- the real model


@pytest.mark.smollm2
def test_smollm2_streaming_matches_eager_attention():
    model, tok = load_backbone("smollm2-135m")
    eager, _ = load_backbone("smollm2-135m", attn_implementation="eager")
    enc = tok(TEXTS[:2], add_special_tokens=False, return_tensors="pt", padding=True)
    lengths = enc.attention_mask.sum(1)
    with torch.no_grad():
        ref = eager(**enc, output_attentions=True).attentions
    c = model.config
    rec = Recorder(c.num_hidden_layers, 2, c.num_attention_heads, enc.input_ids.shape[1])
    TorchBackend(model, chunk_size=16).run(enc.input_ids, enc.attention_mask, rec)
    for layer in range(c.num_hidden_layers):
        for b, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(rec.P[layer, b, :, :n, :n], ref[layer][b, :, :n, :n], atol=1e-5, rtol=0)
    assert no_hooks(model)
