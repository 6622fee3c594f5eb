"""Trainer: λ = 0 is exactly action-only, L_rec reaches the interest head, resume is exact,
NaN stops the run clearly, and the retrieval metrics match a brute-force reference."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from karma_probe.core.config import TrainConfig, make_config
from karma_probe.core.errors import BadInput, Diverged
from karma_probe.data.dataset import load_dataset
from karma_probe.model.retriever import build_model, load_run_model
from karma_probe.train.batches import SequenceBatchMaker, make_batches
from karma_probe.train.evaluate import random_baseline, ranks, retrieval_metrics
from karma_probe.train.loop import train_run
from karma_probe.train.objectives import KarmaObjective

FAST = dict(dataset="synthetic:0", batch_size=8, max_history=4, embed_dim=32, eval_batch_size=64, log_every=1)


def _cfg(condition="action", **kw):
    return make_config("tiny", condition, **{**FAST, **kw})


def _losses(cfg, step=0):
    ds = load_dataset(cfg.dataset)
    model = build_model(cfg, dataset=ds)
    batch = make_batches(cfg, ds, ds.split().train, model.tokenizer)(step)
    return KarmaObjective(model, cfg.lambda_gen, cfg.lambda_rec)(batch), model


def test_conditions_differ_only_in_lambdas():
    cfgs = {c: _cfg(c) for c in ("action", "gen", "rec", "karma")}
    assert {c: (x.lambda_gen, x.lambda_rec) for c, x in cfgs.items()} == {
        "action": (0, 0), "gen": (1, 0), "rec": (0, 1), "karma": (1, 1)}
    strip = lambda c: dataclasses.replace(c, condition="", lambda_gen=0, lambda_rec=0)  # noqa: E731
    assert len({strip(c) for c in cfgs.values()}) == 1


def test_lambda_zero_is_exactly_action_only():
    action, _ = _losses(_cfg("action"))
    karma_zero, _ = _losses(_cfg("karma", reg_weight=0.0))
    assert torch.equal(action["loss"], karma_zero["loss"])
    assert torch.equal(action["loss"], action["l_act"])
    karma, _ = _losses(_cfg("karma"))
    assert torch.allclose(karma["loss"], karma["l_act"] + karma["l_gen"] + karma["l_rec"])
    assert torch.allclose(karma["l_act"], action["l_act"], atol=1e-5)  # causal: target text is invisible to the marker


def test_rec_gradient_reaches_interest_head():
    terms, model = _losses(_cfg("rec"))
    model.zero_grad()
    terms["l_rec"].backward()
    g = model.interest_head.weight.grad
    assert g is not None and g.abs().sum() > 0
    assert model.rec_adapter[0].weight.grad.abs().sum() > 0


def test_resume_gives_identical_weights(tmp_path):
    cfg = _cfg("karma", steps=6, checkpoint_every=3, eval_users=20)
    train_run(cfg, tmp_path / "straight", progress=False)
    assert train_run(cfg, tmp_path / "killed", progress=False, stop_after=4) == {}  # "killed" in step 5
    assert not (tmp_path / "killed" / "checkpoint").exists()
    train_run(cfg, tmp_path / "killed", progress=False)  # same command again: resumes from step 3
    a, _, _ = load_run_model(tmp_path / "straight")
    b, _, _ = load_run_model(tmp_path / "killed")
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    log = [json.loads(line) for line in (tmp_path / "killed" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    meta = json.loads((tmp_path / "killed" / "config.json").read_text())
    assert meta["condition"] == "karma" and meta["seed"] == 0 and "torch" in meta["versions"] and meta["git_sha"]


def test_other_config_in_same_dir_is_bad_input(tmp_path):
    train_run(_cfg(steps=1, eval_users=5), tmp_path / "r", progress=False)
    with pytest.raises(BadInput, match="another config"):
        train_run(_cfg(steps=2, eval_users=5), tmp_path / "r", progress=False)


def test_nan_loss_stops_with_step_and_term(tmp_path, monkeypatch):
    import karma_probe.train.objectives as obj

    monkeypatch.setattr(obj, "info_nce", lambda *a: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(Diverged, match=r"step 1: loss term l_act is nan; .*\(no checkpoint yet: nothing is kept\)"):
        train_run(_cfg(steps=2), tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan").exists()
    # diverging after a checkpoint keeps the run (started again, it resumes from there)
    calls = {"n": 0}

    def nan_from_step_3(*a):
        calls["n"] += 1
        return torch.tensor(float("nan") if calls["n"] >= 3 else 1.0, requires_grad=True)

    monkeypatch.setattr(obj, "info_nce", nan_from_step_3)
    with pytest.raises(Diverged, match=r"step 3: .*its last checkpoint is kept in"):
        train_run(_cfg(steps=4, checkpoint_every=2), tmp_path / "late", progress=False)
    assert (tmp_path / "late" / "checkpoints" / "step-000002").is_dir()


def _brute_force(scores, targets, histories, k):
    hits, ndcg, rr = [], [], []
    for s, t, h in zip(scores, targets, histories):
        cands = [i for i in range(len(s)) if i == t or i not in h]
        order = sorted(cands, key=lambda i: (-s[i], i == t))  # ties against the target
        r = order.index(t) + 1
        hits.append(r <= k)
        ndcg.append(1 / math.log2(r + 1) if r <= k else 0.0)
        rr.append(1 / r)
    return np.mean(hits), np.mean(ndcg), np.mean(rr)


def test_retrieval_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 300)).round(1)  # rounding makes ties
    targets = rng.integers(0, 300, 40)
    histories = [list(rng.choice(300, 30, replace=False)) for _ in range(40)]
    m = retrieval_metrics(ranks(scores, targets, histories))
    for k in (10, 50):
        hr, ndcg, mrr = _brute_force(scores, targets, histories, k)
        assert m[f"hr@{k}"] == pytest.approx(hr) and m[f"ndcg@{k}"] == pytest.approx(ndcg)
    assert m["mrr"] == pytest.approx(mrr)
    # hand-made case: 4 items, history {1}, target 3 scored second among candidates {0, 2, 3}
    r = ranks(np.array([[0.9, 5.0, 0.1, 0.5]]), np.array([3]), [[1]])
    assert r.tolist() == [2]
    assert ranks(np.array([[0.9, 5.0, 0.1, 0.5]]), np.array([3]), None).tolist() == [3]  # no exclusion
    assert random_baseline(4, [[1]], [3])["hr@10"] == 1.0


def test_ties_count_against_the_model():
    """A model that scores everything the same must not look perfect: every target ranks last."""
    n, users = 500, 60
    rng = np.random.default_rng(1)
    targets = rng.integers(0, n, users)
    histories = [list(rng.choice(n, 20, replace=False)) for _ in range(users)]
    r = ranks(np.zeros((users, n)), targets, histories)
    cand = [n - len(set(h) - {t}) for h, t in zip(histories, targets)]
    assert r.tolist() == cand
    m, rnd = retrieval_metrics(r), random_baseline(n, histories, targets)
    for k in (10, 50, 200):
        assert m[f"hr@{k}"] == 0.0 <= rnd[f"hr@{k}"]


def test_random_baseline_matches_simulation():
    rng = np.random.default_rng(2)
    n, users = 120, 40
    targets = rng.integers(0, n, users)
    histories = [list(rng.choice(n, 15, replace=False)) for _ in range(users)]
    sims = [retrieval_metrics(ranks(rng.random((users, n)), targets, histories)) for _ in range(400)]
    closed = random_baseline(n, histories, targets)
    for key in ("hr@10", "hr@50", "ndcg@10", "mrr"):
        assert np.mean([s[key] for s in sims]) == pytest.approx(closed[key], rel=0.06), key


@pytest.mark.parametrize("interface", ["continuous", "text"])
def test_batches_from_history_windows_equal_batches_from_whole_histories(interface):
    """A batch slices only the newest max_history items of each picked example: the same tensors
    as the full histories the split used to store."""
    from karma_probe.data.dataset import Examples
    from karma_probe.model.backbones import load_tokenizer

    cfg = _cfg("karma", max_history=3, interface=interface, batch_size=16)
    ds = load_dataset(cfg.dataset)
    train = ds.split().train
    maker = make_batches(cfg, ds, train, load_tokenizer("tiny"))
    assert isinstance(maker.examples, Examples)
    for step in (0, 1):
        g = maker.generator(step)
        whole = [train[i] for i in torch.randint(len(train), (cfg.batch_size,), generator=g).tolist()]
        assert max(len(e.history) for e in whole) > cfg.max_history  # the windows do cut something
        got, want = maker(step), maker.make(whole, g)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_popularity_and_markov_baselines_on_a_hand_made_split():
    from karma_probe.data.dataset import Example, Split
    from karma_probe.train.evaluate import markov_scores, popularity_scores

    # user a: 0 1 2 | 3 (valid) | 1 (test); user b: 2 1 | 0 | 2 -- prefixes a: (0,1,2), b: (2,1)
    train = (Example("a", (0,), 1), Example("a", (0, 1), 2), Example("b", (2,), 1))
    test = (Example("a", (0, 1, 2, 3), 1), Example("b", (2, 1, 0), 2))
    split = Split(train, (), test)
    assert popularity_scores(split, 4).tolist() == [1, 2, 2, 0]
    mk = markov_scores(split, 4, test)
    # a's last item 3 was never followed by anything: popularity only; b's last item 0 → 1 once
    assert np.argsort(-mk[0], kind="stable").tolist()[:2] == [1, 2] and mk[0].max() < 1
    assert mk[1].argmax() == 1 and mk[1][1] > 1 > mk[1][2]


def test_continuous_forward_matches_a_reference_computation():
    """A 2-item toy: item tokens, interest embeddings and the full-softmax loss by hand."""
    from karma_probe.data.dataset import Dataset, Example, Item

    items = (Item("1", "Alpha", "1990", ("Drama",)), Item("2", "Beta", "1991", ("Comedy",)))
    ds = Dataset("toy", items, {"u": (0, 1, 0, 1)}, 4)
    cfg = make_config("tiny", "action", dataset="synthetic:0", embed_dim=8, max_history=3)
    model = build_model(cfg, dataset=ds)
    with torch.no_grad():  # non-zero ID vectors and bias, so every term of the formula matters
        model.catalogue.id_in.weight.normal_()
        model.catalogue.id_out.weight.normal_()
        model.catalogue.bias.copy_(torch.tensor([0.3, -0.2]))
    cat = model.catalogue
    batch = SequenceBatchMaker(cfg, ds, (), model.tokenizer).make([Example("u", (0, 1), 0)])
    # position 0 is the tokenizer's BOS, then "User history:", then the items
    prefix = [model.tokenizer.bos_token_id] + model.tokenizer("User history:", add_special_tokens=False)["input_ids"]
    P = len(prefix)
    assert model.prefix == tuple(prefix) and P >= 2
    assert batch["items"].tolist() == [[-(t + 1) for t in prefix] + [0, 1]]
    assert batch["targets"].tolist() == [[-100] * P + [1, 0]]
    terms = KarmaObjective(model, 0.0, 0.0)(batch)
    torch.set_grad_enabled(False)
    x = torch.stack([cat.in_proj.weight @ cat.content[i] + cat.in_proj.bias + cat.id_in.weight[i] for i in (0, 1)])
    x = torch.cat([model.backbone.get_input_embeddings().weight[prefix], x])  # (P + 2, d)
    h = model.backbone.model(inputs_embeds=x[None], use_cache=False).last_hidden_state[0, P:]  # (2, d)
    z = torch.nn.functional.normalize(h @ model.interest_head.weight.T + model.interest_head.bias, dim=-1)
    table = torch.stack([cat.item_head.weight @ cat.content[i] + cat.item_head.bias + cat.id_out.weight[i]
                         for i in (0, 1)])
    table = table / table.norm(dim=-1, keepdim=True)
    scale = model.log_scale.exp()
    loss = 0.0
    for pos, target in ((0, 1), (1, 0)):  # position t predicts item t+1
        logits = [float(scale * z[pos] @ table[j] + cat.bias[j]) for j in (0, 1)]
        loss += -(logits[target] - math.log(sum(math.exp(v) for v in logits))) / 2
    assert float(terms["l_act"]) == pytest.approx(loss, rel=1e-5)
    # inference: the interest after the whole history is the last position's
    got = model.interest_for([(0, 1)], max_items=3)
    torch.set_grad_enabled(True)
    assert torch.allclose(got[0], z[1], atol=1e-5)


def test_gen_continuation_equals_running_history_and_text_from_scratch():
    cfg = _cfg("gen", max_history=6)
    ds = load_dataset(cfg.dataset)
    model = build_model(cfg, dataset=ds).eval()
    b = make_batches(cfg, ds, ds.split().train, model.tokenizer)(0)
    emb = model.history_inputs(b["items"])
    h, cache = model.hidden_and_cache(emb, b["mask"])
    logits, labels = model.continuation_logits(h, cache, b["reg_row"], b["reg_col"], b["reg_ids"], b["reg_mask"])
    want_logits, want_labels = [], []
    tok = model.backbone.get_input_embeddings()
    for p, (r, c) in enumerate(zip(b["reg_row"].tolist(), b["reg_col"].tolist())):
        ids = b["reg_ids"][p][b["reg_mask"][p].bool()]  # this row's real text tokens
        x = torch.cat([emb[r, : c + 1], tok(ids[:-1])])[None]  # [history ≤ c, t_1 .. t_{n-1}]
        hs = model.hidden(inputs_embeds=x)[0, c:]  # the states before t_1 .. t_n
        want_logits.append(model.backbone.lm_head(hs))
        want_labels.append(ids)
    assert torch.equal(labels, torch.cat(want_labels))
    assert torch.allclose(logits, torch.cat(want_logits), atol=1e-4)


def test_full_softmax_equals_brute_force_loss():
    cfg = _cfg("action")
    ds = load_dataset(cfg.dataset)
    model = build_model(cfg, dataset=ds)
    batch = SequenceBatchMaker(cfg, ds, ds.split().train, model.tokenizer)(0)
    terms = KarmaObjective(model, 0.0, 0.0)(batch)
    with torch.no_grad():
        h = model.hidden(inputs_embeds=model.history_inputs(batch["items"]), attention_mask=batch["mask"])
        table, bias, scale = model.catalogue.table(), model.catalogue.bias, model.log_scale.exp()
        losses = []
        for b in range(batch["items"].shape[0]):
            for t in range(int(batch["mask"][b].sum())):
                if int(batch["targets"][b, t]) == -100:  # the first-token prefix predicts no item
                    continue
                z = model.interest_from_hidden(h[b, t])
                logits = [float(scale * z @ table[j] + bias[j]) for j in range(len(ds.items))]
                target = int(batch["targets"][b, t])
                losses.append(math.log(sum(math.exp(v) for v in logits)) - logits[target])
    assert float(terms["l_act"].detach()) == pytest.approx(np.mean(losses), rel=1e-5)


def test_text_interface_still_trains(tmp_path):
    cfg = _cfg("karma", interface="text", max_history=3, steps=4, eval_users=10)
    assert cfg.act_loss == "inbatch"
    m = train_run(cfg, tmp_path / "text", progress=False)
    assert m["test"]["hr@10"] >= 0 and "l_gen" in (tmp_path / "text" / "train_log.jsonl").read_text()
    model, _, loaded = load_run_model(tmp_path / "text")
    assert model.interface == "text" and loaded.interface == "text"
    with pytest.raises(BadInput, match="act_loss=softmax needs interface=continuous"):
        _cfg(interface="text", act_loss="softmax")


@pytest.mark.slow
def test_tiny_learns_beyond_chance(tmp_path):
    """Synthetic data has planted genre structure: the tiny model must beat random clearly."""
    cfg = _cfg("action", steps=120, batch_size=16, checkpoint_every=120)
    m = train_run(cfg, tmp_path / "r", progress=False)
    assert m["test"]["hr@10"] > 2 * m["random"]["hr@10"], m
    assert m["test"]["hr@10"] > m["baselines"]["popularity"]["test"]["hr@10"], m


def test_checkpoint_describes_itself_and_loads_without_its_run(tmp_path, monkeypatch):
    """A checkpoint copied out of its run loads alone (its state.json carries the TrainConfig),
    and loading it reads no dataset: the model knows none."""
    import shutil

    import karma_probe.data.dataset as data
    from karma_probe.model.retriever import checkpoint_config, load_checkpoint

    cfg = _cfg("karma", steps=2, checkpoint_every=1, eval_users=5)
    train_run(cfg, tmp_path / "r", progress=False)
    state = json.loads((tmp_path / "r" / "checkpoints" / "step-000001" / "state.json").read_text())
    assert state["step"] == 1 and TrainConfig.from_dict(state["train"]) == cfg.resolve()
    shutil.copytree(tmp_path / "r" / "checkpoint", tmp_path / "alone")
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("loading a checkpoint read the dataset"))
    model, _, loaded = load_checkpoint(tmp_path / "alone")
    assert loaded == cfg.resolve() and not hasattr(model, "dataset")
    ref, _, _ = load_run_model(tmp_path / "r")
    for (n, p), (_, q) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(p, q), n
    # an older checkpoint (no "train" in its state.json) still finds its run's config.json
    old = tmp_path / "r" / "checkpoints" / "step-000002"
    (old / "state.json").write_text(json.dumps({"step": 2, "condition": "karma"}))
    assert checkpoint_config(old) == (cfg.resolve(), "karma")
    shutil.copytree(old, tmp_path / "orphan")
    with pytest.raises(BadInput, match="does not say how it was trained"):
        checkpoint_config(tmp_path / "orphan")


def test_models_take_the_catalogue_from_the_caller():
    """The text interface renders items it is given; a continuous model refuses a catalogue of another size."""
    ds = load_dataset("synthetic:0")
    text = build_model(_cfg(interface="text", max_history=3), dataset=ds).eval()
    with pytest.raises(BadInput, match="pass the catalogue's items"):
        text.interest_for([(0, 1)], max_items=3)
    assert text.interest_for([(0, 1)], max_items=3, items=ds.items).shape == (1, 32)
    cont = build_model(_cfg(), dataset=ds).eval()
    assert cont.item_table(items=ds.items).shape == (len(ds.items), 32)
    with pytest.raises(BadInput, match=f"item tokens for {len(ds.items)} items, the dataset has 3"):
        cont.item_table(items=ds.items[:3])


def test_pooled_embeddings_equal_one_text_at_a_time():
    """Length-sorted, padded batches give each text what it gets alone, back in the input order."""
    from karma_probe.model.catalogue import content_vectors
    from karma_probe.model.retriever import base_model

    model = base_model("tiny").eval()
    texts = ["a", "a much longer item text than the others", "mid length text", "b c", "x y z w"]
    with torch.no_grad():
        alone = []
        for t in texts:
            ids = torch.tensor([model.tokenize([t])[0]])
            alone.append(model.backbone.model(input_ids=ids).last_hidden_state.mean(1)[0])
        alone = torch.stack(alone)
        torch.testing.assert_close(model.item_embeddings(texts, batch_size=2),
                                   torch.nn.functional.normalize(alone, dim=-1), atol=1e-5, rtol=0)
        want = (alone - alone.mean(0)) / alone.std(0).clamp_min(1e-6)
        torch.testing.assert_close(content_vectors(model.backbone, model.tokenizer, texts, 64, batch_size=2), want,
                                   atol=1e-4, rtol=0)


def test_first_token_none_starts_with_the_oldest_item():
    """Runs before v3 (no first_token in their config) keep reading item 0 at position 0."""
    cfg = TrainConfig.from_dict({**_cfg("action").to_dict(), "first_token": "none"})
    assert TrainConfig.from_dict({k: v for k, v in _cfg().to_dict().items() if k != "first_token"}).first_token == "none"
    ds = load_dataset(cfg.dataset)
    b = make_batches(cfg, ds, ds.split().train, build_model(cfg, dataset=ds).tokenizer)(0)
    assert (b["items"] >= 0).all()


def test_balanced_regularizers_never_exceed_rho(tmp_path):
    """The balanced form: every logged ratio w·‖g_reg‖/‖g_act‖ on the shared parameters is ≤ ρ, and
    the logged loss is L_act + Σ w·L_reg with w ≤ λ."""
    cfg = _cfg("karma", steps=12, balance_rho=0.02, reg_weight=1.0, log_every=3, checkpoint_every=12)
    train_run(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for r in rows:
        for k in ("gen", "rec"):
            assert r[f"ratio_{k}"] <= 0.02 + 1e-6 and r[f"w_{k}"] <= 1.0
            assert r[f"ratio_{k}"] == pytest.approx(r[f"w_{k}"] * r[f"gn_{k}"] / r["gn_act"], rel=1e-3)
        assert r["loss"] == pytest.approx(r["l_act"] + r["w_gen"] * r["l_gen"] + r["w_rec"] * r["l_rec"], rel=1e-4)
    assert any(r["w_gen"] < 1.0 for r in rows)  # the balance was active, not a no-op


def test_per_loss_gradient_norms_are_logged_and_match_autograd():
    from karma_probe.train.objectives import gradient_stats, loss_gradients
    from karma_probe.train.loop import _shared_parameters

    terms, model = _losses(_cfg("karma"))
    shared = _shared_parameters(model)
    stats = gradient_stats(loss_gradients(terms, shared))
    model.zero_grad()
    terms["l_gen"].backward(retain_graph=True)
    g_gen = torch.cat([p.grad.flatten() for p in shared if p.grad is not None])
    assert stats["gn_gen"] == pytest.approx(float(g_gen.norm()), rel=1e-5)
    assert set(stats) == {"gn_act", "gn_gen", "gn_rec", "cos_act_gen", "cos_act_rec", "cos_gen_rec"}
    assert all(-1 <= stats[k] <= 1 for k in stats if k.startswith("cos_"))


def test_full_fine_tune_trains_every_layer_and_freezes_the_tied_embedding():
    from karma_probe.core.config import PRESETS
    from karma_probe.train.loop import _freeze

    full = PRESETS["smollm2-full"]
    assert full.train_layers == 0 and full.freeze_embeddings
    cfg = _cfg("action", train_layers=0, freeze_embeddings=True)
    model = build_model(cfg, dataset=load_dataset(cfg.dataset))
    _freeze(model, cfg)
    bb = model.backbone
    assert all(p.requires_grad for layer in bb.model.layers for p in layer.parameters())
    assert not bb.get_input_embeddings().weight.requires_grad
    assert not bb.lm_head.weight.requires_grad  # tied


def test_reference_config_of_a_backbone_two_presets_train():
    """smollm2 and smollm2-full both train SmolLM2: the reference is still the continuous step-0 model."""
    from karma_probe.core.config import reference_config

    cfg = reference_config("smollm2-135m")
    assert cfg is not None and cfg.interface == "continuous" and cfg.train_layers == 8 and cfg.first_token == "bos"
    assert reference_config("tiny").model == "tiny" and reference_config("/some/own/model") is None
