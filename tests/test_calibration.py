"""Calibration: the response arithmetic on hand-computed cases, the interventions' known answers,
α = 0 equal to a plain capture + analyze bit for bit, and every planted collapse moving its metrics
the planted way (tiny in the fast tier, SmolLM2 in the smollm2 tier)."""

import json

import numpy as np
import pytest
import torch

from karma_probe.calibration import interventions as I
from karma_probe.report.dose_response import dose_for
from karma_probe.report.dose_response import direction, fit_indices, monotone, response, slope, slope_replicates

DOSES = [0.0, 0.25, 0.5, 1.0, 2.0]


# --------------------------------------------------------------------------- response arithmetic


def test_slope_monotone_direction_hand_computed():
    # ā = 0.75, Σ(a−ā)² = 2.5, ȳ = 3.6, Σ(a−ā)(y−ȳ) = 1.95 + 0.8 + 0.15 + 0.1 + 5.5 = 8.5 → 3.4
    y = [1.0, 2.0, 3.0, 4.0, 8.0]
    assert slope(DOSES, y) == pytest.approx(3.4)
    assert monotone(y) and direction(y) == "rise"
    assert monotone([5, 5, 4, 1, 1]) and direction([5, 5, 4, 1, 1]) == "fall"
    assert not monotone([1, 3, 2, 4, 5]) and not monotone([2, 2, 2, 2, 2]) and direction([2, 2, 2]) == "flat"
    assert fit_indices([0, 0.25, 0.5, 1, 1]) == [0, 1, 2, 3]  # a saturated dose does not enter the fit twice


def test_slope_interval_and_verdict_from_replicates():
    y = np.array([1.0, 2.0, 3.0, 4.0, 8.0])
    shift = np.random.default_rng(0).normal(size=1000)
    reps = y[:, None] + shift[None, :]  # every replicate shifted by its own constant: the same slope
    np.testing.assert_allclose(slope_replicates(DOSES, reps), 3.4)
    r = response(DOSES, y, higher_is_better=False, intervals=[None] * 5, replicates=list(reps))
    assert r.slope_ci == pytest.approx((3.4, 3.4)) and r.expected == "rise" and r.as_planted
    assert not response(DOSES, y, higher_is_better=True, replicates=list(reps)).as_planted  # expected to fall
    # replicates whose slopes straddle 0: the interval holds 0, so not "as planted" though the slope is right
    noisy = y[:, None] + np.random.default_rng(1).normal(scale=30, size=(5, 1000))
    r = response(DOSES, y, higher_is_better=False, replicates=list(noisy))
    assert r.slope_ci[0] < 0 < r.slope_ci[1] and not r.as_planted
    # no replicates: the verdict is monotone in the expected direction
    assert response(DOSES, y, higher_is_better=False).as_planted
    assert not response(DOSES, [1, 3, 2, 4, 5], higher_is_better=False).as_planted
    # saturated doses (effective 1, 1): the fit uses 0, ¼, ½, 1 only: y = 2a exactly → slope 2
    r = response([0, 0.25, 0.5, 1, 1], [0, 0.5, 1, 2, 2], higher_is_better=False)
    assert r.slope == pytest.approx(2.0) and r.to_json()["values"] == [0, 0.5, 1, 2, 2]


def test_dose_for_reads_the_measured_curve(tmp_path):
    cal = {"schema": "karma_probe.calibration/1", "doses": [0, 0.25, 0.5, 1, 2], "families": {
        # saturating: +0.09 by ¼, then flat (the slope over all doses would say 0.032 per unit)
        "sinks": {"metrics": {"sink_mass": {"expected": "rise", "values": [0.38, 0.47, 0.47, 0.48, 0.48],
                                            "as_planted": True},
                              "sink_rate": {"expected": "rise", "values": [0.7, 0.8, 0.8, 0.8, 0.8],
                                            "as_planted": False}}},
        "geometry": {"metrics": {"erank": {"expected": "fall", "values": [20, 18, 16, 12, 4], "as_planted": True}}}}}
    assert dose_for("sink_mass", 0.045, cal) == pytest.approx(0.125)  # half of the first step
    assert dose_for("sink_mass", -0.045, cal) == pytest.approx(0.125)  # a difference either way
    assert dose_for("sink_mass", 0.095, cal) == pytest.approx(0.75)  # 0.09 at ½, 0.10 at 1: halfway
    assert dose_for("sink_mass", 0.2, cal) is None  # never that far within the calibrated doses
    assert dose_for("erank", 5.0, cal) == pytest.approx(0.625)  # falls 4 by ½, 8 by 1
    assert dose_for("sink_rate", 0.05, cal) is None  # not seen as planted: no dose can be read off
    assert dose_for("lm_ppl", 1.0, cal) is None  # not calibrated
    (tmp_path / "calibration.json").write_text(json.dumps(cal))
    assert dose_for("erank", 2.0, tmp_path) == pytest.approx(0.25)  # the directory or the file
    assert dose_for("erank", 2.0, tmp_path / "calibration.json") == pytest.approx(0.25)


# --------------------------------------------------------------------------- the interventions' known answers


def test_pull_to_mean_and_swap_known_answers():
    from karma_probe.analyzers.geometry import aniso_cos

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 8)).astype(np.float32) * rng.uniform(1, 5, size=(12, 1)).astype(np.float32)
    assert I.pull_to_mean(X, 0.0) is X and I.swap_embeddings(X, 0.0) is X  # α = 0: the input itself
    full = I.pull_to_mean(X, 1.0)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), np.linalg.norm(X, axis=1), rtol=1e-5)  # norms kept
    assert aniso_cos(full) == pytest.approx(1.0, abs=1e-6)  # all parallel
    np.testing.assert_array_equal(I.pull_to_mean(X, 2.0), full)  # clipped at "all the way"
    cos = [aniso_cos(I.pull_to_mean(X, a)) for a in DOSES]
    assert all(b > a for a, b in zip(cos[:4], cos[1:4]))
    # swap: round(a·n) rows replaced by another row; nested; all replaced at a ≥ 1
    half, whole = I.swap_embeddings(X, 0.5), I.swap_embeddings(X, 1.0)
    changed = lambda Y: {i for i in range(len(X)) if not np.array_equal(Y[i], X[i])}  # noqa: E731
    assert len(changed(half)) == 6 and changed(half) <= changed(whole) == set(range(12))
    rows = {tuple(r) for r in X}
    assert all(tuple(r) in rows for r in whole)  # every embedding is one of the probes' own
    np.testing.assert_array_equal(I.swap_embeddings(X, 2.0), whole)


def test_trained_layers():
    assert I.trained_layers(30, 8, "action") == list(range(22, 30))
    assert I.trained_layers(30, 0, "action") == list(range(30))
    assert I.trained_layers(30, 8, "base") == list(range(30))  # an untouched model: all of them


@pytest.fixture(scope="module")
def tiny_subject():
    from karma_probe.calibration.run import load_subject

    return load_subject(model="tiny")


def test_hooks_are_exact_at_zero_and_removed(tiny_subject):
    backbone = tiny_subject.kmodel.backbone
    ids = torch.tensor([[5, 9, 11, 40, 2, 7]])
    with torch.no_grad():
        plain = backbone.model(input_ids=ids).last_hidden_state
        v = torch.randn(backbone.config.hidden_size) * 100
        with I.planted_massive(backbone, 0.0, v, 0), I.planted_key(backbone, 0.0, I.SINK_POSITION), \
                I.planted_key(backbone, 0.0, I.BARCODE_POSITION), \
                I.weight_noise(backbone, 0.0, [0, 1]):
            zero = backbone.model(input_ids=ids).last_hidden_state
        with I.planted_massive(backbone, 1.0, v, 0):
            sunk = backbone.model(input_ids=ids).last_hidden_state
        before = [p.clone() for p in backbone.parameters()]
        with I.weight_noise(backbone, 1.0, [1]):
            noisy = [p.clone() for p in backbone.parameters()]
        after = list(backbone.parameters())
        again = backbone.model(input_ids=ids).last_hidden_state
    assert torch.equal(zero, plain) and torch.equal(again, plain)  # α = 0 exact; hooks gone afterwards
    assert not torch.equal(sunk, plain)
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # weights restored exactly
    # every weight tensor of layer 1 moved, except those with no spread to scale the noise by (the
    # random init's RMSNorm weights are all ones: std 0)
    spread = [p for p in backbone.model.layers[1].parameters() if float(p.detach().float().std()) > 0]
    assert sum(not torch.equal(a, b) for a, b in zip(before, noisy)) == len(spread) >= 7


# --------------------------------------------------------------------------- end to end on the tiny model


@pytest.fixture(scope="module")
def tiny_calibration(tiny_subject):
    from karma_probe.calibration.run import CalibrationOptions, calibrate

    opts = CalibrationOptions(families=("sinks", "massive", "barcodes", "geometry", "knowledge"), doses=tuple(DOSES),
                              probes=8, text_probes=4, progress=False)
    return calibrate(tiny_subject, opts), opts


def test_dose_zero_is_a_plain_capture_and_analyze(tiny_calibration, tmp_path):
    """α = 0 of every family equals ``capture --model tiny`` + ``analyze`` of the same probes, bit for bit."""
    from karma_probe.analyzers.run import analyze_run
    from karma_probe.capture.run import CaptureOptions, create_base_run
    from karma_probe.core.config import reference_config

    result, opts = tiny_calibration
    cfg = reference_config("tiny")
    create_base_run("tiny", tmp_path / "base", CaptureOptions(probes=opts.probes, text_probes=opts.text_probes,
                                                              progress=False),
                    max_items=cfg.max_history, cfg=cfg)
    metrics = [m for f in result["families"].values() for m in f["metrics"]]
    plain = analyze_run(tmp_path / "base", metrics=metrics, threads=1)["summary"]
    for family, block in result["families"].items():
        assert block["dose0_exact"], family
        for metric, r in block["metrics"].items():
            assert r["values"][0] == plain[metric] == result["undosed"][metric], (family, metric)


def test_tiny_interventions_move_their_metrics(tiny_calibration):
    """What a random-init tiny model can show: the massive activation it is given, and embedding
    geometry. It has no sink (sinks emerge in training, Gu et al.) whose key could be amplified,
    near-uniform attention for a key to stand out in, and no knowledge to lose: sink_mass,
    key_concentration, lm_ppl and fact_acc are asserted on SmolLM2 (below) and on a sharpened tiny."""
    result, _ = tiny_calibration
    fam = result["families"]
    massive = fam["massive"]["metrics"]["massive_act"]
    assert massive["as_planted"] and massive["monotone"], (massive["values"], massive["slope_ci"])
    for metric in ("aniso_cos", "uniformity", "isotropy"):
        assert fam["geometry"]["metrics"][metric]["as_planted"], metric
    assert fam["geometry"]["metrics"]["aniso_cos"]["values"][-1] == pytest.approx(1.0, abs=1e-5)
    assert fam["massive"]["scale"]["peak_abs"] > 0 and fam["knowledge"]["scale"]["layers"] == [0, 1]


def test_barcode_on_a_tiny_model_with_peaked_attention(tiny_subject):
    """With its queries sharpened (random attention that is not uniform), raising one key's norm
    raises the barcode statistic."""
    from karma_probe.calibration.run import CalibrationOptions, calibrate

    layers = tiny_subject.kmodel.backbone.model.layers
    with torch.no_grad():
        for layer in layers:
            layer.self_attn.q_proj.weight.mul_(12.0)
    try:
        result = calibrate(tiny_subject, CalibrationOptions(families=("barcodes",), doses=(0.0, 0.5, 1.0, 2.0),
                                                            probes=6, text_probes=2, progress=False))
    finally:
        with torch.no_grad():
            for layer in layers:
                layer.self_attn.q_proj.weight.div_(12.0)
    r = result["families"]["barcodes"]["metrics"]["key_concentration"]
    assert r["as_planted"] and r["monotone"], r


def test_decodability_falls_to_zero_from_planted_decodable_embeddings(tiny_subject):
    """Embeddings that carry their target's genres (the inputs planted decodable): the gain is
    large undosed, and swapping a fraction α of them between probes drives it to ~0."""
    from karma_probe.analyzers.decodability import genre_matrix
    from karma_probe.analyzers.reader import FixedReader
    from karma_probe.calibration.run import CalibrationOptions, capture, dosed_capture, evaluate, inputs_for, with_hidden

    data = tiny_subject.dataset
    genres = list(data.genres)
    rng = np.random.default_rng(0)

    def planted(targets):
        Y = genre_matrix(targets, data.items, genres).astype(np.float32)  # (n, G)
        E = np.zeros((len(targets), 64), np.float32)
        E[:, :len(genres)] = Y
        return E + rng.normal(scale=0.05, size=E.shape).astype(np.float32)

    plain = capture(tiny_subject, CalibrationOptions(probes=24, text_probes=1))
    decodable = with_hidden(plain, interest=planted(plain.hidden["targets"]))
    shared = {"reader": FixedReader()}
    fit = inputs_for(tiny_subject, decodable, shared)
    targets = np.array([ex.target for ex in fit.fit_examples])
    shared["fit_split"] = (fit.space.apply(planted(targets)), targets)
    gains = []
    for alpha in (0.0, 0.5, 1.0):
        cap = dosed_capture("decodability", tiny_subject, decodable, alpha, None)
        gains.append(evaluate(["probe_genre_f1_gain"], inputs_for(tiny_subject, cap, shared))["summary"]["probe_genre_f1_gain"])
    assert gains[0] > 0.3 and gains[0] > gains[1] > gains[2] and abs(gains[2]) < 0.15, gains


def test_cli_writes_the_report_and_refuses_bad_input(tmp_path, capsys):
    from karma_probe.cli import main

    out = tmp_path / "cal"
    assert main(["calibrate", "--model", "tiny", "--out", str(out), "--families", "geometry", "--probes", "4",
                 "--text-probes", "1", "--doses", "0", "0.5", "1", "--threads", "1", "--no-progress"]) == 0
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["schema"] == "karma_probe.calibration/1" and cal["doses"] == [0, 0.5, 1]
    assert set(cal["families"]) == {"geometry"} and (out / "calibration_geometry.png").stat().st_size > 1000
    assert "aniso_cos" in capsys.readouterr().out
    for args, match in ((["--doses", "0.5", "1"], "must start at 0"), (["--doses", "0", "1", "0.5"], "ascending"),
                        (["--probes", "1"], "--probes must be >= 2"),
                        (["--decodability-metrics", "erank"], "unknown erank")):
        assert main(["calibrate", "--model", "tiny", "--out", str(tmp_path / "x"), *args]) == 2
        assert match in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_text("x")
    assert main(["calibrate", "--model", "tiny", "--out", str(tmp_path / "other")]) == 2
    assert "not a calibration directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- SmolLM2


@pytest.mark.smollm2
def test_smollm2_interventions_move_their_metrics():
    """What the committed calibration (reports/calibration-smollm2, 32 probes) found, on 8 probes:
    every planted collapse moves its metrics as planted. The sink is planted in the BOS key (SmolLM2
    already sinks on BOS), so first-token mass rises monotonically over all layers, the top 8 and
    the general passages; sink_rate and Gu et al.'s rate (thresholded counts) are not asserted."""
    from karma_probe.calibration.run import CalibrationOptions, calibrate, load_subject

    subject = load_subject(model="smollm2-135m")
    result = calibrate(subject, CalibrationOptions(families=("sinks", "massive", "barcodes", "geometry", "knowledge"),
                                                   doses=(0.0, 1.0, 2.0), probes=8, text_probes=2, progress=False))
    fam = result["families"]
    for metric in ("sink_mass", "sink_mass_trained", "sink_mass_text"):
        sink = fam["sinks"]["metrics"][metric]
        assert sink["as_planted"] and sink["monotone"], (metric, sink)
    for family, metric in (("massive", "massive_act"), ("barcodes", "key_concentration"),
                           ("geometry", "aniso_cos"),
                           ("geometry", "uniformity"), ("geometry", "isotropy"), ("knowledge", "lm_ppl"),
                           ("knowledge", "fact_acc")):
        assert fam[family]["metrics"][metric]["as_planted"], (family, metric, fam[family]["metrics"][metric])
    assert all(block["dose0_exact"] for block in fam.values())
