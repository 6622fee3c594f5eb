"""The PDF report: pages in the expected order, the verdict's numbers as text, pages that render."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fakeruns import make_run
from pypdf import PdfReader

from karma_probe.analyzers.catalogue import format_delta, format_value
from karma_probe.cli import main
from karma_probe.report import pdf as report
from karma_probe.report.results import load_run

FULL_REPORT = [  # two runs with everything: the page plan, in order
    "Verdict: 2 runs", "Verdict: the paper's claims", "Claims: action-only vs KARMA", "Attention: headline metrics", "Attention: by layer",
    "Attention: sink_mass by layer and head", "Attention: key_concentration by layer and head",
    "Attention: attn_entropy by layer and head", "Attention maps: karma", "Attention maps: action",
    "Geometry: headline metrics", "Geometry: by layer", "Geometry: spectra and cosine similarity",
    "Geometry: interest and item embeddings", "Decodability: headline metrics", "Decodability: the interest embedding",
    "Knowledge: headline metrics", "Retrieval: full-catalogue ranking", "Training: losses and metrics",
    "Appendix: karma", "Appendix: action",
]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = [load_run(make_run(root, "karma", "karma")), load_run(make_run(root, "action", "action"))]
    written = report.write_report(runs, root / "out" / "report.pdf")
    return runs, written


def _texts(path):
    return [p.extract_text() for p in PdfReader(str(path)).pages]


def test_page_plan(full):
    _, written = full
    texts = _texts(written.path)
    assert len(texts) == len(written.pages) == len(FULL_REPORT)
    for title, expected, text in zip(written.pages, FULL_REPORT, texts):
        assert title.startswith(expected)
        assert title.split(" (")[0] in text  # each page carries its own title
    assert all(f"page {i + 1}" in t for i, t in enumerate(texts))


def test_verdict_page_shows_every_value_delta_and_direction(full):
    (karma, action), written = full
    page_one = _texts(written.path)[0]
    for metric, ref in karma.summary.items():
        v = action.summary[metric]
        line = next(line for line in page_one.splitlines() if line.startswith(metric + " "))
        direction = "lower" if not karma.analysis.higher_is_better[metric] else "higher"
        worse = (v - ref > 0) != karma.analysis.higher_is_better[metric]
        assert line.split() == [metric, direction, format_value(ref), format_value(v), format_delta(v - ref),
                                "worse" if worse else "better"], line
    # fakeruns makes action the collapsed run: it is worse on every metric
    assert page_one.count("worse") == len(karma.summary) + 1  # + the legend sentence


def test_verdict_rows_unit():
    from karma_probe.report.pdf import _verdict_word

    assert _verdict_word(0.1, True) == "better" and _verdict_word(0.1, False) == "worse"
    assert _verdict_word(-0.1, False) == "better" and _verdict_word(0.0, True) == "same"
    assert _verdict_word(0.1, None) == "" and _verdict_word(float("nan"), True) == ""


def test_sections_show_their_data(full):
    (karma, action), written = full
    texts = _texts(written.path)
    samples = texts[written.pages.index(next(t for t in written.pages if t.startswith("Decodability: the")))]
    for s in karma.analysis.samples["decoded"]:
        assert s["truth"] in samples and s["decoded"] in samples
    appendix = texts[-2]
    assert '"lambda_gen": 1.0' in appendix and str(karma.path) in appendix and '"config_hash"' in appendix


@pytest.mark.skipif(shutil.which("pdftoppm") is None,
                    reason="pdftoppm not installed (scripts/setup.sh installs poppler-utils)")
def test_every_page_renders_to_a_non_blank_png(full, tmp_path):
    from matplotlib.image import imread

    _, written = full
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(written.path), str(tmp_path / "page")], check=True)
    pngs = sorted(tmp_path.glob("page-*.png"))
    assert len(pngs) == len(written.pages)
    for png in pngs:
        pixels = imread(png)
        assert pixels.shape[1] > pixels.shape[0] > 200  # landscape A4 at 30 dpi: ~351 x 248
        assert pixels.std() > 0.02, f"{png.name} is blank"


def test_missing_captures_and_training_data_give_notes_not_crashes(tmp_path):
    bare = load_run(make_run(tmp_path, "bare", "karma", capture=False, train_log=False, trajectory=False,
                             metrics=False))
    written = report.write_report([bare], tmp_path / "bare.pdf")
    texts = _texts(written.path)
    assert len(texts) == len(written.pages)
    maps_page = texts[next(i for i, t in enumerate(written.pages) if t.startswith("Attention maps"))]
    assert "Not available" in maps_page and "maps.safetensors" in maps_page
    geometry = texts[written.pages.index("Geometry: embedding spectra")]
    assert "Not available" in geometry and "hidden.safetensors" in geometry
    training = texts[written.pages.index("Training")]
    assert "Not available" in training and "train_log.jsonl" in training
    # retrieval still drawn from the analysis summary
    assert any(t.startswith("Retrieval: full-catalogue") for t in written.pages)


LIGHT = dict(capture=False, train_log=False, trajectory=False)  # fewer pages where only page one matters


@pytest.mark.slow
def test_a_capture_too_small_for_geometry_gives_a_note(tmp_path):
    run = load_run(make_run(tmp_path, "one-probe", "karma", n=1, train_log=False, trajectory=False))
    written = report.write_report([run], tmp_path / "small.pdf")
    page = _texts(written.path)[written.pages.index("Geometry: embedding spectra")]
    assert "Not available" in page and "n >= 2" in page


@pytest.mark.slow
def test_one_run_and_four_runs(tmp_path):
    one = report.write_report([load_run(make_run(tmp_path, "solo", "karma", **LIGHT))], tmp_path / "one.pdf")
    assert _texts(one.path)[0].count("verdict") == 0  # no deltas with a single run
    runs = [load_run(make_run(tmp_path / "r", c, c, **LIGHT)) for c in ("base", "action", "gen", "karma")]
    four = report.write_report(runs, tmp_path / "four.pdf")
    page_one = _texts(four.path)[0]
    assert page_one.count("Δ vs ref") == 3
    assert len(PdfReader(str(four.path)).pages) == len(four.pages)


@pytest.mark.slow
def test_metrics_outside_the_known_families_get_their_own_section(tmp_path):
    path = make_run(tmp_path, "r", "karma", **LIGHT)
    a = json.loads((path / "analysis.json").read_text())
    a["summary"]["new_metric"] = 0.123
    a["higher_is_better"]["new_metric"] = True
    (path / "analysis.json").write_text(json.dumps(a))
    written = report.write_report([load_run(path)], tmp_path / "other.pdf")
    assert "Other: headline metrics" in written.pages
    assert "new_metric higher 0.123" in _texts(written.path)[0]


@pytest.mark.slow
def test_duplicate_run_names_are_told_apart(tmp_path):
    a = load_run(make_run(tmp_path / "root0", "run", "action", **LIGHT))
    b = load_run(make_run(tmp_path / "root1", "run", "karma", **LIGHT))
    written = report.write_report([a, b], tmp_path / "dup.pdf")
    assert "root0/run" in _texts(written.path)[0] and "root1/run" in _texts(written.path)[0]


def test_a_failing_section_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    run = load_run(make_run(tmp_path, "r", "karma", **LIGHT))
    out = tmp_path / "report.pdf"
    out.write_bytes(b"previous report")

    def boom(*args, **kwargs):
        raise RuntimeError("section failed")

    monkeypatch.setattr(report, "_geometry", boom)
    with pytest.raises(RuntimeError):
        report.write_report([run], out)
    assert out.read_bytes() == b"previous report"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.pdf")] == []


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    good = make_run(tmp_path, "good", "karma")
    broken = make_run(tmp_path, "broken", "action")
    (broken / "analysis.json").write_text('{"schema": "karma_probe.analysis/1", "records": [')  # killed mid-write
    out = tmp_path / "r.pdf"
    assert main(["report", str(good), str(broken), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "broken/analysis.json" in err and "not valid JSON" in err
    assert main(["report", str(good), str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert main(["report", str(good), "-o", str(tmp_path)]) == 2  # a directory
    assert main(["report", str(good), "-o", str(out), "--probes", "0"]) == 2
    assert not out.exists()


def test_the_command_writes_the_report(tmp_path, capsys):
    run = make_run(tmp_path, "good", "karma", **LIGHT)
    out = tmp_path / "r.pdf"
    assert main(["report", str(run), "-o", str(out)]) == 0
    pages = len(PdfReader(str(out)).pages)
    assert f"{out} ({pages} pages)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_layer_out_of_range_is_a_note_not_an_error(tmp_path):
    good = make_run(tmp_path, "good", "karma", train_log=False, trajectory=False)
    out = tmp_path / "r.pdf"
    assert main(["report", str(good), "-o", str(out), "--layer", "7", "--head", "0"]) == 0
    assert "no layer 7" in _texts(out)[next(i for i, t in enumerate(PdfReader(str(out)).pages)
                                           if "Attention maps" in t.extract_text())]


@pytest.mark.slow
def test_cli_subprocess(tmp_path):
    karma, action = make_run(tmp_path, "karma", "karma"), make_run(tmp_path, "action", "action")
    out = tmp_path / "reports" / "tiny.pdf"
    r = subprocess.run([sys.executable, "-m", "karma_probe", "report", str(karma), str(action), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"({len(FULL_REPORT)} pages)" in r.stdout
    assert PdfReader(str(out)).metadata.title == "karma_probe diagnostic report"


def test_report_values_match_check_formatting(full):
    # the report and `karma-probe check` print numbers the same way
    (karma, _), written = full
    v = karma.summary["sink_mass"]
    assert format_value(v) in _texts(written.path)[0]
    assert format_value(np.float64(v)) == format_value(v)


def test_claims_page_shows_effect_ci_and_verdict(tmp_path):
    from karma_probe.report import study

    runs = [load_run(make_run(tmp_path, c, c, users=200, n_items=400, interval_half=0.01, **LIGHT))
            for c in ("action", "karma")]
    written = report.write_report(runs, tmp_path / "claims.pdf")
    (i,) = [i for i, title in enumerate(written.pages) if title.startswith("Claims: action-only vs KARMA")]
    assert written.pages[i - 1].startswith("Verdict")  # right after the verdict table
    page = _texts(written.path)[i]
    for e in study.verdict(runs):
        line = next(line for line in page.splitlines() if line.startswith(e["metric"] + " "))
        assert format_value(e["effect"]) in line and e["status"] in line, line
        ci = "no CI" if e["ci_low"] is None else f"[{format_value(e['ci_low'])}, {format_value(e['ci_high'])}]"
        assert ci in line, line
    assert not [line for line in page.splitlines() if line.startswith("recon_token_acc ")]  # by construction
    assert "holds (one seed)" in page and "paired bootstrap over 200 users" in page
    assert "[" in next(line for line in page.splitlines() if line.startswith("sink_mass "))  # probe CI


def test_retrieval_is_shown_beside_its_nulls(tmp_path):
    from karma_probe.report import study

    runs = [load_run(make_run(tmp_path, c, c, users=200, n_items=400, **LIGHT)) for c in ("action", "karma")]
    written = report.write_report(runs, tmp_path / "nulls.pdf")
    (i,) = [i for i, t in enumerate(written.pages) if t.startswith("Retrieval against its nulls")]
    assert written.pages[i - 1].startswith("Retrieval: full-catalogue ranking")
    page = _texts(written.path)[i]
    e = study.vs_baselines(runs)["karma"]["popularity"]["hr@10"]
    line = next(x for x in page.splitlines() if x.startswith("KARMA popularity hr@10 "))
    assert format_value(e["run"]) in line and format_value(e["baseline"]) in line and e["status"] in line, line
    assert f"[{format_value(e['ci_low'])}, {format_value(e['ci_high'])}]" in line
    ref = study.vs_reference(runs)["action"]["sasrec"]
    line = next(x for x in page.splitlines() if x.startswith("action-only SASRec (RecBole), test_all hr@10 "))
    assert format_value(ref["reference"]) in line and ref["status"] in line, line
    plain = [load_run(make_run(tmp_path / "old", c, c, **LIGHT)) for c in ("action", "karma")]  # no ranks
    assert not any(t.startswith("Retrieval against") for t in report.write_report(plain, tmp_path / "o.pdf").pages)


@pytest.mark.slow
def test_no_claims_page_without_both_conditions(tmp_path):
    runs = [load_run(make_run(tmp_path, c, c, **LIGHT)) for c in ("gen", "karma")]
    assert not any(p.startswith("Claims") for p in report.write_report(runs, tmp_path / "r.pdf").pages)


def test_the_exact_mark_is_recon_exacts_rule(tmp_path):
    """A decoded sample is "exact" when its title matches by recon_exact's rule (catalogue.exact):
    genres, a trailing year, case and punctuation do not count; another title does."""
    path = make_run(tmp_path, "karma", "karma", capture=False)
    analysis = json.loads((path / "analysis.json").read_text())
    analysis["samples"]["decoded"] = [
        {"history": "h0", "truth": "Heat (1995) | Action, Crime", "decoded": "heat"},
        {"history": "h1", "truth": "Heat (1995) | Action, Crime", "decoded": "Heat 2 (1995) | Action"}]
    (path / "analysis.json").write_text(json.dumps(analysis))
    written = report.write_report([load_run(path)], tmp_path / "report.pdf")
    page = _texts(written.path)[written.pages.index(next(t for t in written.pages if t.startswith("Decodability: the")))]
    assert page.count("(exact)") == 1 and page.count("(differs)") == 1
    assert page.index("(exact)") < page.index("Heat 2")


def test_several_seeds_follow_each_condition_over_training(tmp_path):
    runs = [load_run(make_run(tmp_path, f"{c}-s{s}", c, seed=s, capture=False, train_log=False))
            for s in (0, 1) for c in ("action", "karma")]
    written = report.write_report(runs, tmp_path / "report.pdf")
    text = "\n".join(t for title, t in zip(written.pages, _texts(written.path)) if title.startswith("Training"))
    assert "key_concentration over training" in text and "erank over training" in text  # one figure per metric
    assert "error bars: 95 % CI" in text  # condition means over seeds carry their t-interval


def test_a_study_of_several_seeds_is_reported_by_condition(tmp_path):
    """Page one is the condition table (mean ± CI over seeds, as study.table), bars are per
    condition, the per-run pages show each condition's lowest seed, the appendix every run."""
    from karma_probe.report import study

    runs = [load_run(make_run(tmp_path, f"{c}-s{s}", c, seed=s, train_log=False))
            for s in (2, 1) for c in ("action", "karma")] + [load_run(make_run(tmp_path, "base", "base", metrics=False))]
    assert [r.name for r in study.representatives(runs)] == ["action-s1", "karma-s1", "base"]
    written = report.write_report(runs, tmp_path / "study.pdf")
    texts = dict(zip(written.pages, _texts(written.path)))
    assert written.pages[0] == report.FOREST_TITLE  # the verdict as a picture; the tables are the appendix
    (table,) = [t for t in written.pages if t.startswith("Study: 5 runs, mean ± 95 % CI over seeds per condition")]
    order = list(written.pages)
    assert order.index(table) > max(i for i, t in enumerate(order) if t.startswith("Attention"))
    assert order.index(table) < order.index(next(t for t in order if t.startswith("Claims: action-only vs KARMA")))
    assert order.index(next(t for t in order if t.startswith("Claims"))) < order.index(
        next(t for t in order if t.startswith("Appendix:")))
    header, rows = study.condition_rows(runs)
    assert header[2:] == ["base (n=1)", "action-only (n=2)", "KARMA (n=2)"]  # a reference of unknown kind
    sink = next(r for r in rows if r[0] == "sink_mass")
    assert sink[3] == study.mean_ci(study.table(runs, ["sink_mass"])["action"]["sink_mass"]) and "±" in sink[3]
    assert f"sink_mass lower {sink[2]} {sink[3]} {sink[4]}" in texts[table]
    attention = texts[next(t for t in written.pages if t.startswith("Attention: headline metrics"))]
    assert "by condition" in attention and "mean of 2 seeds ± 95 % CI (base: 1)" in attention
    maps = [t for t in written.pages if t.startswith("Attention maps:")]
    assert [t.split(",")[0] for t in maps] == ["Attention maps: action-s1", "Attention maps: karma-s1", "Attention maps: base"]
    assert sum(t.startswith("Appendix:") for t in written.pages) == 5
    assert "5 runs: action ×2, karma ×2, base ×1" in texts[written.pages[-1]]  # the footer names the study, not 5 runs


def test_ablation_page_sets_each_regularizer_beside_karma(tmp_path):
    from karma_probe.report import study

    runs = [load_run(make_run(tmp_path, c, c, users=200, n_items=400, interval_half=0.01, **LIGHT))
            for c in ("action", "gen", "rec", "karma")]
    written = report.write_report(runs, tmp_path / "ablations.pdf")
    (i,) = [i for i, t in enumerate(written.pages) if t.startswith("Each regularizer alone")]
    assert written.pages[i - 1].startswith("Claims: action-only vs KARMA")
    page = _texts(written.path)[i]
    gen = {e["metric"]: e for e in study.ablations(runs)["gen"]}
    karma = {e["metric"]: e for e in study.verdict(runs)}
    line = next(x for x in page.splitlines() if x.startswith("sink_mass "))
    for value in (gen["sink_mass"]["gen"], gen["sink_mass"]["effect"], karma["sink_mass"]["effect"]):
        assert format_value(value) in line, line
    without = [r for r in runs if r.condition in ("action", "karma")]
    assert not any(t.startswith("Each regularizer") for t in report.write_report(without, tmp_path / "w.pdf").pages)


def test_page_one_of_a_study_is_the_forest_plot_of_its_claims(tmp_path):
    """Every claim is a row (its label, its numbers in their own units, raw → Holm verdict), under its
    family's heading, with the legend; the same entries as study.verdict."""
    from karma_probe.report import study
    from karma_probe.report.figures.style import VERDICT_LEGEND, verdict_key
    from karma_probe.analyzers.catalogue import format_delta

    runs = [load_run(make_run(tmp_path, f"{c}-s{s}", c, seed=s, users=60, n_items=200, **LIGHT))
            for s in (0, 1, 2) for c in ("action", "karma")]
    written = report.write_report(runs, tmp_path / "study.pdf")
    assert written.pages[0] == report.FOREST_TITLE
    page = _texts(written.path)[0]
    assert report.FOREST_TITLE in page and "Holm-corrected CI" in page
    claims = study.verdict(runs)
    for e in claims:
        assert f"{e['metric']} ({e['claim'].split()[1]})" in page, e["metric"]
        assert f"{format_delta(e['effect'])} [{format_value(e['ci_low'])}" in page, e["metric"]
        said = (f"{e['status']} (raw and Holm)" if e["holm"]["status"] == e["status"]
                else f"{e['status']} → Holm {e['holm']['status']}")
        assert said in page, e["metric"]
    for family in ("Attention", "Geometry", "Decodability", "Knowledge", "Retrieval"):
        assert family in page.splitlines()
    for word in {verdict_key(e["holm"]["status"]) for e in claims}:
        assert VERDICT_LEGEND[word] in page
