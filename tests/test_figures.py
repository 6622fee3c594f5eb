"""Figure functions on known data, and both renderers drawing the same numbers."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from fakeruns import make_run

from karma_probe.core.errors import BadInput
from karma_probe.report import figures
from karma_probe.report.figures.spec import FigureSpec, series
from karma_probe.report.results import load_maps, load_run
from karma_probe.rundir.capture import ProbeMap


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return load_run(make_run(root, "karma", "karma")), load_run(make_run(root, "action", "action"))


def _drawn(spec: FigureSpec):
    """Render with matplotlib to PNG bytes (proves it draws) and return the Figure."""
    fig = figures.to_matplotlib(spec)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    return fig


# --------------------------------------------------------------------------- attention

def test_sink_mass_by_layer_averages_heads_per_layer(two_runs):
    spec = figures.sink_mass_by_layer(two_runs)
    assert spec.kind == "line" and [s.name for s in spec.series] == ["karma", "action"]
    run = two_runs[0]
    for layer in range(3):
        heads = [r.value for r in run.analysis.records if r.metric == "sink_mass" and r.layer == layer]
        assert len(heads) == 4
        assert spec.series[0].y[layer] == pytest.approx(np.mean(heads))
    assert list(spec.series[0].x) == [0, 1, 2]
    assert spec.note == "lower is better"
    # fakeruns makes action the collapsed run: more sink mass at every layer
    assert np.all(spec.series[1].y > spec.series[0].y)


def test_per_layer_records_win_over_head_means(tmp_path):
    path = make_run(tmp_path, "r", "karma")
    a = json.loads((path / "analysis.json").read_text())
    a["records"].append({"metric": "sink_mass", "layer": 1, "head": None, "value": 0.99})
    (path / "analysis.json").write_text(json.dumps(a))
    spec = figures.sink_mass_by_layer([load_run(path)])
    assert list(spec.series[0].x) == [1] and spec.series[0].y[0] == 0.99


def test_head_heatmap_matrix_and_missing_cells(tmp_path, two_runs):
    run = two_runs[0]
    spec = figures.head_heatmap(run, "sink_mass")
    assert spec.matrix.shape == (3, 4) and spec.y_ticks == ("0", "1", "2") and len(spec.x_ticks) == 4
    rec = next(r for r in run.analysis.records if r.metric == "sink_mass" and r.layer == 2 and r.head == 3)
    assert spec.matrix[2, 3] == rec.value
    path = make_run(tmp_path, "holes", "karma")
    a = json.loads((path / "analysis.json").read_text())
    a["records"] = [r for r in a["records"] if not (r["metric"] == "sink_mass" and r["layer"] == 1 and r["head"] == 2)]
    (path / "analysis.json").write_text(json.dumps(a))
    holes = figures.head_heatmap(load_run(path), "sink_mass")
    assert np.isnan(holes.matrix[1, 2]) and np.isfinite(holes.matrix).sum() == 11
    _drawn(holes)
    assert figures.head_heatmap(run, "no_such_metric").empty


def test_head_heatmaps_share_one_colour_scale(two_runs):
    specs = figures.head_heatmaps(two_runs, "sink_mass")
    lo = min(np.nanmin(s.matrix) for s in specs)
    hi = max(np.nanmax(s.matrix) for s in specs)
    assert all(s.vmin == lo and s.vmax == hi for s in specs)


def test_attention_map_is_the_captured_matrix_with_token_labels(two_runs):
    probe = load_maps(two_runs[1])[1]  # probe 1 has 11 tokens
    tokens = [f"tok{i}" for i in range(11)]
    spec = figures.attention_map(probe, layer=2, head=1, tokens=tokens, run_name="action")
    np.testing.assert_array_equal(spec.matrix, probe.attn[2, 1])
    assert spec.x_ticks == tuple(tokens) == spec.y_ticks
    assert spec.vmax == pytest.approx(probe.attn[2, 1][1:].max())  # row 0 excluded from the scale
    assert "probe 1, layer 2, head 1" in spec.title
    # without tokens the ids label the axes
    assert figures.attention_map(probe, 0, 0).x_ticks == tuple(str(int(i)) for i in probe.input_ids)
    with pytest.raises(BadInput, match="no layer 3"):
        figures.attention_map(probe, 3, 0)
    with pytest.raises(BadInput, match="10 token labels for 11"):
        figures.attention_map(probe, 0, 0, tokens=tokens[:10])


def test_strongest_sink(two_runs):
    run = two_runs[1]
    layer, head = figures.strongest_sink(run)
    best = max((r for r in run.analysis.records if r.metric == "sink_mass"), key=lambda r: r.value)
    assert (layer, head) == (best.layer, best.head)


# --------------------------------------------------------------------------- geometry

def test_spectrum_of_a_rank_one_set_is_one_component():
    rng = np.random.default_rng(0)
    x = np.outer(rng.normal(size=50), rng.normal(size=8)) + rng.normal(size=8)  # rank 1 after centering
    spec = figures.singular_spectrum({"rank1": x, "random": rng.normal(size=(50, 8))})
    rank1, rand = spec.series
    assert rank1.y[0] == pytest.approx(1.0) and np.all(rank1.y[1:] < 1e-8)
    assert rand.y.sum() == pytest.approx(1.0) and rand.y[0] < 0.5 and spec.log_y


def test_cosine_histogram_known_answers():
    identical = np.tile(np.array([[1.0, 2.0, 3.0]]), (20, 1))
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0]])
    spec = figures.cosine_histogram({"same": identical, "opposite": opposite}, bins=10)
    same, opp = spec.series
    assert same.y.sum() == pytest.approx(1.0) and opp.y.sum() == pytest.approx(1.0)
    assert same.x[np.argmax(same.y)] == pytest.approx(1.0, abs=spec.bin_width)  # all 190 pairs at cos 1
    assert opp.x[np.argmax(opp.y)] == pytest.approx(-1.0, abs=spec.bin_width)   # the one pair at cos -1
    np.testing.assert_array_equal(same.x, opp.x)                               # shared bins
    assert spec.meta == {"same": pytest.approx(1.0), "opposite": pytest.approx(-1.0)}


def test_pca_scatter_line_and_label_pooling():
    t = np.linspace(-1, 1, 30)[:, None]
    x = t * np.array([[1.0, 2.0, 0.5]])  # points on a line
    labels = [f"g{i % 12}" for i in range(30)]
    spec = figures.pca_scatter(x, labels, max_groups=5)
    assert spec.x_label.startswith("PC1 (100% of variance)")
    names = [s.name for s in spec.series]
    assert len(names) == 6 and "other" in names
    assert sum(len(s.x) for s in spec.series) == 30
    np.testing.assert_allclose(np.concatenate([s.y for s in spec.series]), 0, atol=1e-9)  # no PC2 spread
    with pytest.raises(BadInput):
        figures.pca_scatter(x, labels[:3])


# --------------------------------------------------------------------------- retrieval and training

def test_hr_at_k_from_metrics_json_with_random_reference(two_runs):
    spec = figures.hr_at_k(two_runs)
    karma, action, rand = spec.series
    assert list(karma.x) == [10, 50, 200]
    assert list(karma.y) == pytest.approx([two_runs[0].metrics["test"][f"hr@{k}"] for k in (10, 50, 200)])
    assert rand.dashed and rand.name == "random" and spec.log_x


def test_hr_at_k_falls_back_to_the_summary(tmp_path):
    run = load_run(make_run(tmp_path, "no-metrics", "karma", metrics=False))
    (line,) = figures.hr_at_k([run]).series
    assert list(line.y) == pytest.approx([run.summary["hr@10"], run.summary["hr@50"], run.summary["hr@200"]])


def test_loss_curves_leave_out_terms_never_logged(two_runs):
    karma, action = two_runs
    assert [s.name for s in figures.loss_curves([karma]).series] == ["loss", "l_act", "l_gen", "l_rec"]
    assert [s.name for s in figures.loss_curves([action]).series] == ["loss", "l_act"]
    both = figures.loss_curves(two_runs, keys=("loss",))
    assert [s.name for s in both.series] == ["karma loss", "action loss"] and len(both.series[0].x) == 30


def test_gradient_ratios_use_the_balanced_weight_or_lambda(tmp_path):
    """λ_eff·‖g_reg‖/‖g_act‖ per logged row: the balanced weight w where logged, else the run's λ."""
    import json

    run_dir = make_run(tmp_path, "karma", "karma")
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg.setdefault("train", {}).update(lambda_gen=0.5, lambda_rec=1.0)
    (run_dir / "config.json").write_text(json.dumps(cfg))
    rows = [{"step": 10, "loss": 1.0, "gn_act": 2.0, "gn_gen": 4.0, "gn_rec": 8.0, "cos_act_gen": 0.1, "cos_act_rec": -0.2},
            {"step": 20, "loss": 1.0},  # a row without gradient norms is skipped
            {"step": 30, "loss": 1.0, "gn_act": 1.0, "gn_gen": 2.0, "gn_rec": 3.0, "w_gen": 0.1, "w_rec": 0.05,
             "cos_act_gen": 0.0, "cos_act_rec": 0.3}]
    (run_dir / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = figures.gradient_ratios([load_run(run_dir)])
    gen, rec = spec.series
    assert list(gen.x) == [10, 30] and list(gen.y) == pytest.approx([0.5 * 4 / 2, 0.1 * 2 / 1])
    assert list(rec.y) == pytest.approx([1.0 * 8 / 2, 0.05 * 3 / 1])
    assert "median" in spec.note
    _drawn(spec)
    assert figures.gradient_ratios([load_run(make_run(tmp_path, "plain", "action"))]).empty


def test_metric_trajectory(two_runs, tmp_path):
    spec = figures.metric_trajectory(two_runs, "sink_mass")
    assert list(spec.series[0].x) == [10, 20, 30]
    assert spec.series[0].y[-1] == pytest.approx(two_runs[0].summary["sink_mass"])
    no_traj = load_run(make_run(tmp_path, "flat", "karma", trajectory=False))
    assert figures.metric_trajectory([no_traj], "sink_mass").empty


def test_metric_bars(two_runs):
    spec = figures.metric_bars(two_runs, "hr@10")
    assert list(spec.series[0].x) == ["karma", "action"]
    assert list(spec.series[0].y) == [two_runs[0].summary["hr@10"], two_runs[1].summary["hr@10"]]


# --------------------------------------------------------------------------- renderers

def _all_specs(runs):
    probe = load_maps(runs[0])[0]
    x = np.random.default_rng(0).normal(size=(30, 5))
    return [figures.sink_mass_by_layer(runs), figures.head_heatmap(runs[0]),
            figures.attention_map(probe, 1, 1, [f"t{i}" for i in range(len(probe.input_ids))]),
            figures.singular_spectrum({"x": x}), figures.cosine_histogram({"x": x}),
            figures.pca_scatter(x, ["a", "b", "c"] * 10), figures.hr_at_k(runs), figures.loss_curves([runs[0]]),
            figures.metric_trajectory(runs, "hr@10"), figures.metric_bars(runs, "sink_mass")]


def test_both_renderers_draw_every_kind_with_the_same_numbers(two_runs):
    import plotly.graph_objects as go

    for spec in _all_specs(two_runs):
        fig = _drawn(spec)
        pfig = figures.to_plotly(spec)
        assert isinstance(pfig, go.Figure)
        if spec.kind == "heatmap":
            (trace,) = pfig.data
            z = np.array([[np.nan if v is None else v for v in row] for row in trace.z], dtype=float)
            np.testing.assert_array_equal(z, spec.matrix)
            continue
        assert len(pfig.data) == len(spec.series)
        for trace, s in zip(pfig.data, spec.series):
            np.testing.assert_allclose(np.asarray(trace.y, float), s.y)
        if spec.kind == "line":
            lines = fig.axes[0].get_lines()
            for line, s in zip(lines, spec.series):
                np.testing.assert_allclose(line.get_ydata(), s.y)


def test_renderers_survive_awkward_labels():
    tokens = ("<|endoftext|>", "$5", " the", "<|endoftext|>")  # repeated, HTML-like, mathtext-like
    attn = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    spec = figures.attention_map(ProbeMap(0, attn[None, None].astype(np.float32), np.arange(4)), 0, 0, tokens)
    _drawn(spec)
    pfig = figures.to_plotly(spec)
    assert list(pfig.layout.xaxis.tickvals) == [0, 1, 2, 3]  # repeated tokens keep their own columns
    assert pfig.layout.xaxis.ticktext[0] == "&lt;|endoftext|&gt;"


def test_empty_specs_render_a_no_data_panel():
    spec = FigureSpec(kind="line", title="nothing", series=(series("a", [], []),))
    assert spec.empty
    fig = _drawn(spec)
    assert any(t.get_text() == "no data" for t in fig.axes[0].texts)
    assert figures.to_plotly(spec).layout.annotations[0].text == "no data"


def test_spec_validation():
    with pytest.raises(ValueError):
        FigureSpec(kind="pie", title="x")
    with pytest.raises(ValueError):
        FigureSpec(kind="heatmap", title="x", matrix=np.zeros((2, 2)), x_ticks=("a",))
    with pytest.raises(ValueError):
        series("s", [1, 2], [1])


def test_figures_and_report_do_not_import_torch():
    code = ("import karma_probe.report.figures, karma_probe.report.pdf, karma_probe.commands.report, sys; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- confidence intervals (issue 13)

@pytest.fixture(scope="module")
def ci_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci-runs")
    return tuple(load_run(make_run(root, c, c, users=200, n_items=400, interval_half=0.05)) for c in ("karma", "action"))


def test_metric_bars_carry_each_runs_ci_and_both_renderers_draw_it(ci_runs):
    spec = figures.metric_bars(ci_runs, "sink_mass")
    (bars,) = spec.series
    assert list(bars.low) == pytest.approx([r.summary["sink_mass"] - 0.05 for r in ci_runs])
    assert list(bars.high) == pytest.approx([r.summary["sink_mass"] + 0.05 for r in ci_runs])
    assert "95 % CI" in spec.note
    fig = _drawn(spec)
    from matplotlib.container import BarContainer

    (container,) = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    assert container.errorbar is not None  # matplotlib drew the error bars
    segments = container.errorbar.lines[2][0].get_segments()
    assert [s[1][1] - s[0][1] for s in segments] == pytest.approx([0.1, 0.1])
    trace = figures.to_plotly(spec).data[0]
    assert trace.error_y.array == pytest.approx((0.05, 0.05)) and trace.error_y.arrayminus == pytest.approx((0.05, 0.05))


def test_condition_bars_are_the_mean_over_seeds_with_its_t_interval(tmp_path):
    from karma_probe.report import stats

    runs = [load_run(make_run(tmp_path, f"{c}-s{s}", c, seed=s, capture=False, train_log=False))
            for s in (0, 1, 2) for c in ("action", "karma")]
    runs.append(load_run(make_run(tmp_path, "base", "base", capture=False, train_log=False, users=20, n_items=400)))
    spec = figures.condition_bars(runs, "sink_mass")
    (bars,) = spec.series
    assert list(bars.x) == ["action", "karma", "base"]
    action = [r.summary["sink_mass"] for r in runs if r.condition == "action"]
    ci = stats.t_interval(action)
    assert (bars.y[0], bars.low[0], bars.high[0]) == pytest.approx((np.mean(action), ci.low, ci.high))
    base = runs[-1].summary["sink_mass"]
    assert (bars.low[2], bars.high[2]) == pytest.approx((base - 0.02, base + 0.02))  # one run: its own CI
    assert spec.note == "lower is better; mean of 3 seeds ± 95 % CI (base: 1)"


def test_bars_without_any_ci_draw_no_error_bars(two_runs):
    spec = figures.metric_bars(two_runs, "sink_mass")  # runs from before issue 13
    assert spec.series[0].low is None and "CI" not in spec.note
    assert figures.to_plotly(spec).data[0].error_y.array is None
    assert _drawn(spec).axes[0].containers[0].errorbar is None


def test_hr_at_k_error_bars_from_user_ranks_and_baseline_lines(ci_runs):
    from karma_probe.report import stats

    spec = figures.hr_at_k(ci_runs)
    karma = spec.series[0]
    expected = [stats.rank_metric_ci(ci_runs[0].ranks("test"), f"hr@{k}") for k in (10, 50, 200)]
    assert list(karma.low) == pytest.approx([c.low for c in expected])
    assert list(karma.high) == pytest.approx([c.high for c in expected])
    assert [s.name for s in spec.series if s.dashed] == ["random", "popularity", "markov"]
    assert figures.to_plotly(spec).data[0].error_y.arrayminus is not None
    _drawn(spec)
    assert figures.hr_at_k(ci_runs, split="valid").series[0].low is None  # no ranks for valid: no CI invented


def test_series_rejects_bounds_of_the_wrong_length():
    with pytest.raises(ValueError, match="CI bounds"):
        series("s", [1, 2], [0.1, 0.2], low=[0.0], high=[0.3])


# --------------------------------------------------------------------------- run colours (issue 27)

def _hls(colour: str) -> tuple[float, float, float]:
    """(hue in degrees, lightness, saturation)."""
    import colorsys

    from matplotlib.colors import to_rgb

    h, lightness, s = colorsys.rgb_to_hls(*to_rgb(colour))
    return h * 360, lightness, s


def _hue_gap(a: str, b: str) -> float:
    d = abs(_hls(a)[0] - _hls(b)[0])
    return min(d, 360 - d)


TRAINED = ("action", "gen", "rec", "karma")


def test_run_look_one_hue_per_condition_seeds_as_shades_and_dashes():
    from karma_probe.report.figures.style import Look, run_look

    for cond in TRAINED:
        seeds = [run_look(cond, s) for s in (0, 1, 2)]
        # one hue family: saturated colours within 25 degrees of each other
        assert all(_hls(a.colour)[2] > 0.25 and _hue_gap(a.colour, b.colour) <= 25 for a in seeds for b in seeds), cond
        assert len({x.colour for x in seeds}) == 3 and len({x.dash for x in seeds}) == 3, cond  # shades and styles differ
        assert seeds[0].dash == "solid" and run_look(cond) == Look(seeds[0].colour)
        assert len({(x.colour, x.dash) for x in map(lambda s: run_look(cond, s), range(100, 112))}) == 12
    for a, b in ((a, b) for i, a in enumerate(TRAINED) for b in TRAINED[i + 1:]):  # different hues
        assert min(_hue_gap(run_look(a, s).colour, run_look(b, t).colour) for s in range(3) for t in range(3)) >= 25, (a, b)
    base = run_look("base", 0)
    assert base.colour == "#000000" and base.dash == "solid"  # the reference in black
    assert all(_hls(run_look("base", s).colour)[2] == 0 for s in range(3))  # its seeds: greys, never a hue


def test_run_look_gives_other_groups_and_unknown_conditions_their_own_hue():
    from karma_probe.report.figures.style import run_look

    known = {run_look(c, s).colour for c in (*TRAINED, "base") for s in range(3)}
    other_models = [run_look("base", 0, g).colour for g in (1, 2, 3)]  # base runs of three more models
    assert len(set(other_models)) == 3 and not set(other_models) & known
    assert run_look("my-condition", 0).colour not in known
    assert run_look("my-condition", 0) == run_look("my-condition", 0)  # stable (not Python's salted hash)
    r = subprocess.run([sys.executable, "-c", "from karma_probe.report.figures.style import run_look; "
                        "print(run_look('my-condition', 0).colour)"], capture_output=True, text=True)
    assert r.stdout.strip() == run_look("my-condition", 0).colour  # the same in another process


@pytest.fixture(scope="module")
def thirteen_runs(tmp_path_factory):
    """A study's 13 runs: four conditions x three seeds, plus the untouched base."""
    root = tmp_path_factory.mktemp("study")
    runs = [load_run(make_run(root, f"{c}-s{s}", c, seed=s, capture=False, users=30, n_items=100))
            for c in TRAINED for s in (0, 1, 2)]
    return runs + [load_run(make_run(root, "base", "base", capture=False, users=30, n_items=100))]


def test_every_run_figure_colours_runs_by_condition_and_seed(thirteen_runs):
    from matplotlib.colors import same_color

    from karma_probe.report.figures.style import run_look

    want = {r.name: run_look(r.condition, r.seed) for r in thirteen_runs}
    assert len({(x.colour, x.dash) for x in want.values()}) == 13  # every run drawn differently
    for spec in (figures.metric_by_layer(thirteen_runs, "sink_mass"), figures.hr_at_k(thirteen_runs),
                 figures.metric_trajectory(thirteen_runs, "sink_mass")):
        runs = [s for s in spec.series if not s.dashed]
        assert [s.name for s in runs] == list(want), spec.title
        assert all(s.look == want[s.name] for s in runs), spec.title
        # both renderers draw exactly these colours and styles
        traces = {t.name: t for t in figures.to_plotly(spec).data}
        assert all((traces[s.name].line.color, traces[s.name].line.dash) == (s.look.colour, s.look.dash) for s in runs)
        handles, labels = _drawn(spec).axes[0].get_legend_handles_labels()
        lines = {label: getattr(h, "lines", [h])[0] for h, label in zip(handles, labels)}  # an errorbar: its data line
        assert all(same_color(lines[s.name].get_color(), s.look.colour) for s in runs)
        assert all(lines[s.name].get_linestyle() == {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-."}[s.look.dash]
                   for s in runs)
    x = np.random.default_rng(0).normal(size=(30, 5))
    looks = figures.run_looks(thirteen_runs)
    for spec in (figures.singular_spectrum({r.name: x for r in thirteen_runs}, looks=looks),
                 figures.cosine_histogram({r.name: x for r in thirteen_runs}, looks=looks)):
        assert all(s.look == want[s.name] for s in spec.series)


def test_bars_take_each_runs_or_conditions_colour_in_both_renderers(thirteen_runs):
    from matplotlib.colors import same_color

    from karma_probe.report.figures.style import run_look

    for spec, want in ((figures.metric_bars(thirteen_runs, "sink_mass"),
                        [run_look(r.condition, r.seed).colour for r in thirteen_runs]),
                       (figures.condition_bars(thirteen_runs, "sink_mass"),
                        [run_look(c).colour for c in (*TRAINED, "base")])):
        (bars,) = spec.series
        assert list(bars.colours) == want
        assert list(figures.to_plotly(spec).data[0].marker.color) == want
        patches = _drawn(spec).axes[0].patches
        assert len(patches) == len(want) and all(same_color(p.get_facecolor(), c) for p, c in zip(patches, want))
    # the mean bar of a condition is its seed-0 shade; the base bar is black
    assert figures.condition_bars(thirteen_runs, "sink_mass").series[0].colours[-1] == "#000000"


def test_condition_trajectory_colours_conditions_and_draws_the_reference_black():
    from karma_probe.report.figures.style import run_look

    traj = {"conditions": {c: {"sink_mass": [{"step": s, "mean": 0.1 * s, "ci_low": None, "ci_high": None}
                                             for s in (10, 20)]} for c in ("action", "karma")}}
    spec = figures.condition_trajectory(traj, "sink_mass", base=0.5, base_name="step 0")
    assert [s.look for s in spec.series[:2]] == [run_look("action"), run_look("karma")]
    assert spec.series[2].name == "step 0" and spec.series[2].look.colour == "#000000"
    assert figures.to_plotly(spec).data[2].line.dash == "dash"


def test_run_looks_tell_groups_of_one_condition_apart(tmp_path):
    """Base runs of different models (a user's own checkpoints) get different colours; seeds of one
    model share their group's hue."""
    from dataclasses import replace

    base = load_run(make_run(tmp_path, "base", "base", capture=False))
    mine = [replace(load_run(make_run(tmp_path, f"mine-s{s}", "base", seed=s, capture=False)),
                    config={"condition": "base", "seed": s, "train": {"model": "/models/mine"}}) for s in (0, 1)]
    looks = figures.run_looks([base, *mine])
    assert looks["base"].colour == "#000000"
    assert looks["mine-s0"].colour not in ("#000000", looks["base"].colour)
    assert _hue_gap(looks["mine-s0"].colour, looks["mine-s1"].colour) <= 25 and looks["mine-s0"] != looks["mine-s1"]
    assert figures.run_looks(mine)["mine-s0"].colour == "#000000"  # alone, the first group is the reference
# --------------------------------------------------------------------------- the verdict

def test_claims_forest_of_a_fake_study_draws_raw_and_corrected_intervals(tmp_path):
    import math

    from karma_probe.report import study
    from karma_probe.analyzers.catalogue import FACTS, FAMILIES
    from karma_probe.report.figures.spec import forest_layout
    from karma_probe.report.figures.style import VERDICT_INK, VERDICT_LEGEND, verdict_key

    runs = [load_run(make_run(tmp_path, f"{c}-s{s}", c, seed=s, users=60, n_items=200, capture=False))
            for s in (0, 1, 2) for c in ("action", "karma")]
    claims = study.verdict(runs)
    spec = figures.claims_forest(claims)
    assert spec.kind == "forest" and not spec.empty and len(spec.rows) == len(claims)
    groups = list(dict.fromkeys(r.group for r in spec.rows))
    assert groups == [f.capitalize() for f in FAMILIES if any(FACTS[e["metric"]].family == f for e in claims)]
    by_label = {r.label.split(" (")[0]: r for r in spec.rows}
    for e in claims:
        row, half = by_label[e["metric"]], (e["ci_high"] - e["ci_low"]) / 2
        if half == 0:  # hr@200 of a 200-item catalogue: 1 for every run, a CI of width 0, nothing to scale by
            assert e["effect"] == 0 and (row.x, row.low, row.high_wide) == (0, 0, 0) and "[0, 0]" in row.text
            continue
        assert row.x == pytest.approx(math.asinh(e["effect"] / half))
        assert (row.low, row.high) == pytest.approx((math.asinh(e["ci_low"] / half), math.asinh(e["ci_high"] / half)))
        assert row.low_wide <= row.low and row.high_wide >= row.high  # the corrected CI is never narrower
        assert row.verdict == verdict_key(e["holm"]["status"]) and row.verdict in VERDICT_INK
        assert (row.low_wide > 0) == e["holm"]["holds"] or not e["holm"]["holds"]  # holds: wide CI above 0
    ys, headings = forest_layout(spec.rows)
    assert len(set(ys)) == len(ys) and [g for g, _ in headings] == groups and ys == sorted(ys, reverse=True)
    assert "0" in spec.x_ticks and len(spec.x_ticks) == len(spec.x_tick_values)
    fig = _drawn(spec)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [r.label for r in spec.rows]
    assert {t.get_text() for t in ax.texts} >= set(groups) | {r.text for r in spec.rows}
    plot = figures.to_plotly(spec)
    dots = [t for t in plot.data if t.mode == "markers"]
    assert sum(len([x for x in t.x if x is not None]) for t in dots) == len(claims)
    assert {t.name for t in dots} == {VERDICT_LEGEND[r.verdict] for r in spec.rows}
    assert list(plot.layout.yaxis.ticktext) == [r.label for r in spec.rows]


def test_claims_forest_says_a_verdict_once_unless_the_correction_changes_it():
    """Each row prints the raw → corrected verdict where Holm moves the decision, one verdict where not."""
    kept = {"metric": "sink_mass", "claim": "action-only higher than karma", "effect": 0.05, "ci_low": 0.03,
            "ci_high": 0.07, "status": "holds", "holm": {"status": "holds", "holds": True, "ci_low": 0.02, "ci_high": 0.08}}
    moved = {**kept, "metric": "aniso_cos", "ci_low": 0.001, "ci_high": 0.099,
             "holm": {"status": "within noise", "holds": False, "ci_low": -0.01, "ci_high": 0.11}}
    rows = {r.label.split(" (")[0]: r.text for r in figures.claims_forest([kept, moved]).rows}
    assert rows["sink_mass"].endswith("; holds (raw and Holm)") and "→" not in rows["sink_mass"]
    assert rows["aniso_cos"].endswith("; holds → Holm within noise")
    uncorrected = {k: v for k, v in kept.items() if k != "holm"}
    assert figures.claims_forest([uncorrected]).rows[0].text.endswith("; holds")
    limits = {**kept, "detectable": 0.02, "holm": {**kept["holm"], "detectable": 0.05}}
    assert figures.claims_forest([limits]).rows[0].text.endswith("; holds (raw and Holm); detectable 0.02 (Holm 0.05)")


def test_claims_forest_without_cis_or_claims(tmp_path):
    from karma_probe.report import study

    runs = [load_run(make_run(tmp_path, c, c, capture=False)) for c in ("action", "karma")]  # no intervals at all
    spec = figures.claims_forest(study.verdict(runs))
    assert all(np.isnan(r.x) and r.verdict == "no CI" and "no CI" in r.text for r in spec.rows)
    _drawn(spec)
    figures.to_plotly(spec)
    assert figures.claims_forest([]).empty
    _drawn(figures.claims_forest([]))
