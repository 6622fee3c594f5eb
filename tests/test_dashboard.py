"""The Streamlit dashboard: every page through AppTest, the runs-root confinement, broken runs,
the ``karma-probe dashboard`` command, the app shipping inside the package, and one end-to-end
test in headless Chromium, driven through Playwright.

Tests that take ``any_root`` run twice: on fake runs (tests/fakeruns.py, ``fake_root``: the fast
tier) and, marked ``slow``, on the run dirs of the ``runs_root`` fixture: real runs made by the tiny
preset (trained, captured and analyzed once per session by the ``tiny_study`` fixture). Tests that
need a broken or symlinked run copy that root first (``scratch_root``), so the fixture itself stays
untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fakeruns import make_run
import karma_probe
from karma_probe.analyzers.catalogue import format_delta, format_value
from karma_probe.core.errors import BadInput
from karma_probe.dashboard import APP
from karma_probe.report import figures, results
from karma_probe.report.figures.render import PLOTLY_MAX_TICKS
from karma_probe.rundir.capture import ProbeMap

REPO = Path(__file__).resolve().parents[1]
CLONE_APP = REPO / "dashboards" / "app.py"  # the thin runner kept for `streamlit run dashboards/app.py`
PAGES = ("overview", "attention", "geometry", "decodability", "retrieval", "training")
TITLES = {"overview": "Overview", "attention": "Attention sinks", "geometry": "Geometry",
          "decodability": "Decodability", "retrieval": "Retrieval", "training": "Training"}
# The end-to-end test's screenshot goes to its tmp dir: a test run rewrites no tracked file. To
# refresh the README's picture: KARMA_PROBE_SCREENSHOT=reports/dashboard.png pytest -m browser
SCREENSHOT_ENV = "KARMA_PROBE_SCREENSHOT"
# How long a page takes to render is measured by benchmarks/dashboard_render.py, not asserted here.


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    """Fake runs (tests/fakeruns.py) with every file a page draws from: captures, train logs,
    trajectories, per-user ranks and baselines. Only AppTest reads it, so it is shared."""
    root = tmp_path_factory.mktemp("fake-runs")
    for cond in ("action", "karma"):
        make_run(root, cond, cond, users=50, n_items=200)
    return root


@pytest.fixture(scope="module")
def runs_root(tiny_study) -> Path:
    """The runs root every test reads: real runs made by the tiny preset (tests/conftest.py),
    action-only and KARMA trained on MovieLens-100k, captured and analyzed, plus the untouched base."""
    return tiny_study[0]


@pytest.fixture(params=["fake_root", pytest.param("runs_root", marks=pytest.mark.slow)])
def any_root(request) -> Path:
    """Each test that takes it runs twice: on fake runs (fast tier) and on the tiny study's real runs (slow)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def scratch_root(any_root, tmp_path) -> Path:
    """A copy of ``any_root`` that a test may break; checkpoints beyond the tokenizer are left out."""
    root = tmp_path / "runs"
    shutil.copytree(any_root, root, ignore=_keep_light)
    return root


def _keep_light(directory: str, names: list[str]) -> set[str]:
    """copytree filter: drop weights and intermediate checkpoints (real runs), keep captures and JSON."""
    in_checkpoint = Path(directory).name == "checkpoint"
    return {n for n in names if n in ("checkpoints", "resume") or (in_checkpoint and n.endswith(".safetensors"))}


def app(root: Path | None, monkeypatch, query: dict | None = None, script: Path = APP) -> AppTest:
    """The dashboard as ``karma-probe dashboard --runs ROOT`` starts it (``streamlit run APP -- --runs ROOT``)."""
    monkeypatch.setattr(sys, "argv", [str(script), *(["--runs", str(root)] if root else [])])
    at = AppTest.from_file(str(script), default_timeout=60)
    at.query_params.update(query or {})
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.run()
    if page != "overview":  # the default page
        at.switch_page(f"panels/{page}.py").run()
    return at


def charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as the JSON the browser receives."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, texts(at.exception)
    assert not at.error, texts(at.error)


# --------------------------------------------------------------------------- every page

@pytest.mark.parametrize("page", PAGES)
def test_page_renders_charts(any_root, monkeypatch, page):
    at = open_page(app(any_root, monkeypatch), page)
    assert_clean(at)
    figs = charts(at)
    assert figs, f"{page}: no chart"
    assert any(trace.get("x") is not None or trace.get("z") is not None for f in figs for trace in f["data"]), \
        f"{page}: every chart is empty"
    at.run()  # a rerun, as after a widget change
    assert_clean(at)
    assert len(charts(at)) == len(figs)


def test_overview_table_has_every_run_and_deltas(any_root, monkeypatch):
    listing = results.list_runs(any_root)
    at = open_page(app(any_root, monkeypatch, {"ref": listing.ok[0].name}), "overview")
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["run"]) == [r.name for r in listing.ok]
    assert list(table["status"]).count("reference") == 1
    assert table.loc[table["status"] == "reference", "run"].item() == listing.ok[0].name
    # the other runs' status is their chain (rundir.chain): fake runs record no fingerprints
    assert set(table["status"]) - {"reference"} <= {"ok", "unverified"}
    other = table[table["status"] != "reference"].iloc[0]
    metric = "sink_mass"
    ref_value = listing.ok[0].summary[metric]
    value = next(r for r in listing.ok if r.name == other["run"]).summary[metric]
    assert other[metric] == f"{format_value(value)} ({format_delta(value - ref_value)})"


def test_changes_follow_each_metrics_direction(tmp_path):
    # fake runs on purpose (not runs_root): their known answer is that action collapsed more than karma
    action, karma = (results.load_run(make_run(tmp_path, c, condition=c)) for c in ("action", "karma"))
    against_action = results.changes(karma, action, ["sink_mass", "hr@10", "erank"])
    assert {m: c.verdict for m, c in against_action.items()} == {"sink_mass": "better", "hr@10": "better", "erank": "better"}
    assert against_action["sink_mass"].delta == pytest.approx(karma.summary["sink_mass"] - action.summary["sink_mass"])
    assert results.changes(action, karma, ["sink_mass"])["sink_mass"].verdict == "worse"
    assert results.changes(action, action, ["sink_mass"])["sink_mass"].verdict == "same"
    assert results.changes(action, karma, ["no_such_metric"])["no_such_metric"].verdict == ""


def test_attention_page_shows_two_maps_side_by_side(any_root, monkeypatch):
    listing = results.list_runs(any_root)
    at = open_page(app(any_root, monkeypatch), "attention")
    assert_clean(at)
    maps = [f for f in charts(at) if "probe" in f["layout"]["title"]["text"]]
    assert len(maps) == 2
    left, right = (f["layout"]["title"]["text"].split(":")[0] for f in maps)
    assert left != right  # two different runs
    heads = [f for f in charts(at) if "by layer and head" in f["layout"]["title"]["text"]]
    assert len(heads) == len(listing.ok)
    # tokens label the axes of each map (ids where a run has no tokenizer); the hover names every cell
    for f in maps:
        z, hover = f["data"][0]["z"], f["data"][0]["text"]
        assert len(z) == len(z[0]) == len(hover) == len(hover[0])
        assert 0 < len(f["layout"]["xaxis"]["ticktext"]) <= len(z)


def test_long_maps_label_every_kth_token():
    n = 100  # a real history prompt: every label on a 450 px axis would overlap
    attn = np.tril(np.ones((1, 1, n, n), dtype=np.float32))
    attn /= attn.sum(-1, keepdims=True)
    probe = ProbeMap(index=0, attn=attn, input_ids=np.arange(n))
    fig = figures.to_plotly(figures.attention_map(probe, 0, 0, [f"t{i}" for i in range(n)]))
    axis = fig.layout.xaxis
    assert len(axis.ticktext) <= PLOTLY_MAX_TICKS
    assert list(axis.ticktext) == [f"t{i}" for i in axis.tickvals]  # each label still sits on its own token
    assert len(fig.data[0].text) == n


# --------------------------------------------------------------------------- broken and foreign runs

def test_broken_runs_get_a_notice_and_the_rest_works(scratch_root, monkeypatch):
    good = results.list_runs(scratch_root).ok
    cut = scratch_root / "killed"  # a training job killed while writing analysis.json
    cut.mkdir()
    (cut / "config.json").write_text("{}")
    (cut / "analysis.json").write_text('{"schema": "karma_probe.analysis/1", "records": [')
    (scratch_root / "half").mkdir()  # created, never analyzed
    (scratch_root / "half" / "config.json").write_text("{}")

    at = open_page(app(scratch_root, monkeypatch), "overview")
    assert_clean(at)
    table = at.dataframe[0].value
    for name in ("killed", "half"):
        row = table[table["run"] == name]
        assert row["status"].item().startswith("not loaded: ")
        assert name in texts(at.warning)
    assert "analysis.json: not found" in table.loc[table["run"] == "half", "status"].item()
    assert len(table) == len(good) + 2
    for page in PAGES[1:]:
        at.switch_page(f"panels/{page}.py").run()
        assert_clean(at)
        assert charts(at), page


def test_symlinks_out_of_the_root_are_refused_unread(scratch_root, tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere"
    make_run(outside, "secret", condition="action")
    (scratch_root / "linked").symlink_to(outside / "secret", target_is_directory=True)
    inner = scratch_root / "inner-link"  # a run whose analysis.json alone leads out
    inner.mkdir()
    (inner / "analysis.json").symlink_to(outside / "secret" / "analysis.json")
    victim = next(d for d in sorted(scratch_root.iterdir()) if (d / "capture").is_dir() and not d.is_symlink())
    shutil.rmtree(victim / "capture")  # a run whose capture leads out
    (victim / "capture").symlink_to(outside / "secret" / "capture", target_is_directory=True)

    read = []  # every JSON / JSON-lines file read (karma_probe.rundir's readers all go through Path.read_text)
    real_read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda f, *a, **k: read.append(Path(f)) or real_read_text(f, *a, **k))
    listing = results.list_runs(scratch_root, confine=True)
    broken = {b.name: b.reason for b in listing.broken}
    assert "outside the runs root" in broken["linked"] and "outside the runs root" in broken["inner-link"]
    assert not [f for f in read if outside in f.resolve().parents], "a file outside the root was opened"
    assert "linked" in {r.name for r in results.list_runs(scratch_root).ok}  # unconfined callers: as before

    # A run with fingerprints (a real capture) whose capture now leads to another run's is BROKEN as a
    # whole (rundir.chain) and not loaded; a run without them (fake runs) loads, its capture refused.
    victim_loads = victim.name in {r.name for r in results.list_runs(scratch_root, confine=True).ok}
    at = open_page(app(scratch_root, monkeypatch, {"ref": victim.name}), "overview")
    assert_clean(at)
    assert "linked" in texts(at.warning) and "outside the runs root" in texts(at.warning)
    if not victim_loads:
        assert f"'{victim.name}' is not a loadable run" in texts(at.warning)
    at.switch_page("panels/attention.py").run()  # the reference run is the left map
    assert_clean(at)
    if victim_loads:
        assert f"{victim.name}: no attention maps to show" in texts(at.warning)
    assert charts(at)  # the other runs still draw
    at.switch_page("panels/geometry.py").run()
    assert_clean(at)
    if victim_loads:
        assert f"{victim.name}: no embeddings to show" in texts(at.warning)
        assert "outside the runs root" in texts(at.warning)


def test_query_parameters_cannot_name_other_paths(any_root, tmp_path, monkeypatch):
    names = [r.name for r in results.list_runs(any_root).ok]
    at = app(any_root, monkeypatch, {"run": ["../" + tmp_path.name, "/etc", "no-such-run", names[-1]], "ref": "/etc/passwd"})
    at.run()
    assert_clean(at)
    warnings = texts(at.warning)
    assert warnings.count("outside the runs root") == 3  # two runs and the ref
    assert "'no-such-run' is not a loadable run" in warnings
    assert at.multiselect(key="runs").value == [names[-1]]
    assert at.selectbox(key="reference").value == names[-1]


def test_query_parameters_pick_runs_and_reference(any_root, monkeypatch):
    names = [r.name for r in results.list_runs(any_root).ok]
    at = app(any_root, monkeypatch, {"run": names[:2], "ref": names[1]})
    at.run()
    assert_clean(at)
    assert not at.warning
    assert at.multiselect(key="runs").value == names[:2]
    assert at.selectbox(key="reference").value == names[1]


def test_confined_resolves_inside_only(tmp_path):
    (tmp_path / "root" / "run").mkdir(parents=True)
    root = tmp_path / "root"
    assert results.confined(root, root / "run") == (root / "run").resolve()
    assert results.confined(root, root / "run" / ".." / "run") == (root / "run").resolve()
    for outside in (root / "..", tmp_path, Path("/etc/passwd"), root / "run" / ".." / ".." / "x"):
        with pytest.raises(BadInput, match="outside the runs root"):
            results.confined(root, outside)
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(BadInput):
        results.confined(root, root / "loop")


def test_without_a_runs_root_the_app_says_how_to_start(tmp_path, monkeypatch):
    for root, message in ((None, "karma-probe dashboard --runs DIR"), (tmp_path / "gone", "no such runs directory")):
        at = app(root, monkeypatch)
        at.run()
        assert not at.exception
        assert message in texts(at.error)


def test_empty_runs_root_explains_what_to_do(tmp_path, monkeypatch):
    at = app(tmp_path, monkeypatch)
    at.run()
    assert not at.exception
    assert "No run selected" in texts(at.info)
    (tmp_path / "training").mkdir()  # a run still training: no analysis.json yet
    (tmp_path / "training" / "train_log.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    at.run()
    assert not at.exception
    assert "training** was not loaded" in texts(at.warning) and "analysis.json: not found" in texts(at.warning)


# --------------------------------------------------------------------------- the command

def test_dashboard_command_rejects_a_missing_runs_dir(tmp_path):
    r = subprocess.run([sys.executable, "-m", "karma_probe", "dashboard", "--runs", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"karma-probe dashboard: error: {tmp_path / 'nope'}: no such runs directory"]


def test_the_command_serves_the_app_inside_the_package(tmp_path, monkeypatch):
    """`karma-probe dashboard` runs the app that ships in the package, not a file of a source checkout."""
    package = Path(karma_probe.__file__).resolve().parent
    assert APP == package / "dashboard" / "app.py" and APP.is_file()
    assert sorted(p.name for p in (APP.parent / "panels").glob("*.py")) == sorted(["__init__.py", *(f"{p}.py" for p in PAGES)])
    execs = []
    monkeypatch.setattr(os, "execv", lambda exe, argv: execs.append(argv))  # stop short of starting the server
    from karma_probe.cli import main

    assert main(["dashboard", "--runs", str(tmp_path), "--port", "8765"]) == 0
    (argv,) = execs
    assert argv[1:4] == ["-m", "streamlit", "run"] and Path(argv[4]) == APP
    assert argv[argv.index("--") + 1:] == ["--runs", str(tmp_path.resolve())]


def test_the_clone_runner_serves_the_same_app(fake_root, monkeypatch):
    """`streamlit run dashboards/app.py` (the design's top-level dashboards/) runs the packaged router."""
    at = app(fake_root, monkeypatch, script=CLONE_APP)
    at.run()
    assert_clean(at)
    assert at.title[0].value == "Overview" and [r.name for r in results.list_runs(fake_root).ok] == list(at.dataframe[0].value["run"])
    at.switch_page(str(APP.parent / "panels" / "retrieval.py")).run()
    assert_clean(at)
    assert at.title[0].value == "Retrieval" and charts(at)


def test_a_wheel_carries_the_app_and_the_command_finds_it_there(tmp_path):
    """A regular (non-editable) install: build a wheel from a copy of the sources, unpack it as pip
    would into site-packages, and start the command from there (os.execv intercepted)."""
    src = tmp_path / "src"  # a copy: building in the checkout would write build/ and *.egg-info into it
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "karma_probe", src / "karma_probe", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("karma_probe-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {"karma_probe/dashboard/app.py", "karma_probe/dashboard/__init__.py",
            *(f"karma_probe/dashboard/panels/{p}.py" for p in PAGES)}
    assert want <= names, sorted(want - names)
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import os, sys; from karma_probe.cli import main\n"
             "os.execv = lambda exe, argv: print(argv[4])\n"
             "sys.exit(main(['dashboard', '--runs', sys.argv[1]]))")
    runs = tmp_path / "runs"
    runs.mkdir()
    r = subprocess.run([sys.executable, "-c", probe, str(runs)], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == site / "karma_probe" / "dashboard" / "app.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the dashboard exited with {server.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the dashboard did not answer within {timeout} s")


# The page as the browser sees it. Streamlit draws over a websocket after load, so the test waits
# for these in the live DOM rather than for the load event.
PLOTTED = "[...document.querySelectorAll('.js-plotly-plot')].filter(e => e.querySelector('.main-svg')).length"
EXCEPTIONS = "document.querySelectorAll('[data-testid=\"stException\"]').length"
RUNNING = "!!document.querySelector('[data-testid=\"stStatusWidget\"]')"  # shown while a script runs


def _system_chromium() -> str:
    """Debian's chromium (scripts/test.sh installs it): Playwright drives it, and downloads no browser."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.geteuid() == 0:  # CI runs as root, where scripts/test.sh installs it: missing is a failure
            pytest.fail("chromium not found; scripts/test.sh installs it (apt-get install chromium)")
        pytest.skip("chromium not installed and not root to install it (apt-get install chromium)")
    return chromium


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_in_headless_chromium(runs_root, tmp_path, monkeypatch):
    """`karma-probe dashboard` serves every page and the plotly charts render in a real browser."""
    from playwright.sync_api import sync_playwright  # dev extra

    chromium = _system_chromium()
    expected = {}  # charts per page as AppTest sees them: the browser must draw every one
    for page in PAGES:
        expected[page] = len(charts(open_page(app(runs_root, monkeypatch), page)))

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "dashboard.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "server.log"  # a file, not a pipe: an unread pipe that fills up would stall the server
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "karma_probe", "dashboard", "--runs", str(runs_root),
                                   "--port", str(port), "--host", "127.0.0.1"],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    page_errors = []  # uncaught JavaScript exceptions, on any page
    try:
        _wait_healthy(url, server, log, timeout=60)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            try:
                tab = browser.new_page(viewport={"width": 1400, "height": 1900})
                tab.on("pageerror", lambda e: page_errors.append(str(e)))
                tab.goto(url)
                for page in PAGES:
                    start = time.monotonic()
                    if page != "overview":  # through the sidebar, as a user switches pages (no reload)
                        tab.click(f'[data-testid="stSidebarNav"] a[href$="/{page}"]')
                    tab.wait_for_function(f"document.querySelector('h1')?.textContent === {json.dumps(TITLES[page])} "
                                          f"&& {PLOTTED} >= {expected[page]} && !{RUNNING}", timeout=60_000)
                    print(f"{page}: {expected[page]} charts drawn in {time.monotonic() - start:.2f} s")
                    assert tab.evaluate(EXCEPTIONS) == 0, page
                    assert tab.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length") >= expected[page]
                    assert tab.url.rstrip("/").endswith("" if page == "overview" else f"/{page}"), tab.url
                    if page == "attention":  # the README's picture: the sink curve, heads and two maps
                        tab.wait_for_timeout(500)  # let plotly finish its transition frame
                        tab.screenshot(path=str(screenshot))
            finally:
                browser.close()
    finally:  # the command execs streamlit, so server.pid is the server itself
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert not page_errors, page_errors
    assert server.returncode == 0, log.read_text()  # SIGTERM is a clean stop
    assert screenshot.stat().st_size > 20_000  # a real picture, not a blank page


# --------------------------------------------------------------------------- confidence intervals (issue 13), fake runs

@pytest.fixture
def ci_root(tmp_path) -> Path:
    root = tmp_path / "ci-runs"
    for cond in ("action", "karma"):
        make_run(root, cond, cond, users=100, n_items=400, interval_half=0.01)
    return root


def test_overview_shows_claims_with_ci_and_bars_with_error_bars(ci_root, monkeypatch):
    from karma_probe.report import study

    at = open_page(app(ci_root, monkeypatch), "overview")
    assert_clean(at)
    claims = at.dataframe[1].value
    expected = study.verdict(list(results.list_runs(ci_root).ok))
    assert list(claims["metric"]) == [e["metric"] for e in expected]
    mrr = claims[claims["metric"] == "mrr"].iloc[0]
    e = next(e for e in expected if e["metric"] == "mrr")
    assert mrr["verdict"] == e["status"] == "holds (one seed)"
    assert mrr["95 % CI"] == f"[{format_value(e['ci_low'])}, {format_value(e['ci_high'])}]"
    bars = charts(at)[-1]["data"][0]
    assert bars["error_y"]["visible"] and len(bars["error_y"]["array"]) == 2


def test_retrieval_page_draws_user_bootstrap_error_bars(ci_root, monkeypatch):
    at = open_page(app(ci_root, monkeypatch), "retrieval")
    assert_clean(at)
    at_k = charts(at)[0]
    runs = [t for t in at_k["data"] if t["name"] in ("action", "karma")]
    assert runs and all(t["error_y"]["arrayminus"] for t in runs)
    assert {"popularity", "markov"} <= {t["name"] for t in at_k["data"]}


def test_retrieval_page_puts_each_run_beside_its_nulls(ci_root, monkeypatch):
    from karma_probe.report import study

    at = open_page(app(ci_root, monkeypatch), "retrieval")
    assert_clean(at)
    table = at.dataframe[-1].value
    assert list(table.columns) == list(study.NULL_COLUMNS)
    expected = study.null_rows(list(results.list_runs(ci_root).ok))
    assert table.values.tolist() == expected and any("SASRec" in row[1] for row in expected)


def test_a_study_selection_gets_the_condition_table_and_condition_bars(tmp_path, monkeypatch):
    from karma_probe.report import study

    root = tmp_path / "study"
    for seed in (0, 1):
        for cond in ("action", "karma"):
            make_run(root, f"{cond}-s{seed}", cond, seed=seed, users=50, n_items=400, capture=False)
    at = open_page(app(root, monkeypatch), "overview")
    assert_clean(at)
    header, rows = study.condition_rows(list(results.list_runs(root).ok))
    table = at.dataframe[1].value  # after the per-run table
    assert list(table.columns) == header and table.values.tolist() == [r for r in rows if any(r[1:])]
    bars = charts(at)[-1]["data"][0]
    assert list(bars["x"]) == ["action", "karma"] and len(bars["error_y"]["array"]) == 2


def test_overview_sets_each_regularizer_beside_karma(tmp_path, monkeypatch):
    from karma_probe.report import study

    root = tmp_path / "ablation-runs"
    for cond in ("action", "gen", "rec", "karma"):
        make_run(root, cond, cond, users=100, n_items=400, interval_half=0.01)
    at = open_page(app(root, monkeypatch), "overview")
    assert_clean(at)
    header, rows = study.ablation_rows(list(results.list_runs(root).ok))
    table = next(d.value for d in at.dataframe if "gen only: verdict" in d.value.columns)
    assert list(table.columns) == header and table.values.tolist() == rows


def test_a_stale_run_is_marked_in_the_overview_and_copies_count_once(tmp_path, monkeypatch):
    """Issue 28: the dashboard showed a run whose capture was replaced as "ok", and "KARMA (n=4)" for
    copies of one run."""
    import json

    from safetensors.numpy import save_file

    root = tmp_path / "runs"
    stale = make_run(root, "karma-s0", "karma", users=50, n_items=200)
    make_run(root, "action-s0", "action", users=50, n_items=200)
    (stale / "capture" / "manifest.json").write_text("{}")  # a capture rewritten since the analysis
    save_file({"x": np.zeros(3, np.float32)}, str(stale / "capture" / "stats.safetensors"))
    analysis = json.loads((stale / "analysis.json").read_text())
    analysis["derived_from"] = {"capture": "0123456789abcdef"}  # recorded from another capture
    (stale / "analysis.json").write_text(json.dumps(analysis))
    shutil.copytree(root / "action-s0", root / "action-s0-copy")
    at = open_page(app(root, monkeypatch, {"ref": "action-s0"}), "overview")
    assert_clean(at)
    table = at.dataframe[0].value
    status = dict(zip(table["run"], table["status"]))
    assert status["karma-s0"].startswith("STALE: ") and "re-run `karma-probe analyze`" in status["karma-s0"]
    assert status["action-s0-copy"] == "not loaded: the same run as action-s0 (a symlink or a copy of it); listed once"
def test_overview_opens_with_the_forest_plot_of_the_claims(ci_root, monkeypatch):
    from karma_probe.report import figures
    from karma_probe.report import study

    at = open_page(app(ci_root, monkeypatch), "overview")
    assert_clean(at)
    forest = charts(at)[0]  # the first chart on the page, above every table
    expected = figures.to_plotly(figures.claims_forest(study.verdict(list(results.list_runs(ci_root).ok))))
    assert list(forest["layout"]["yaxis"]["ticktext"]) == list(expected.layout.yaxis.ticktext)
    dots = [t for t in forest["data"] if t.get("mode") == "markers"]
    assert [list(t["x"]) for t in dots] == [list(t.x) for t in expected.data if t.mode == "markers"]
    assert any("Holm" in text for t in dots for text in t["text"])
    assert any(a["text"] == "<b>Retrieval</b>" for a in forest["layout"]["annotations"])
    assert "Holm verdict" in at.dataframe[1].value.columns  # the claims table follows, with the corrected verdict


def test_overview_of_two_training_regimes_draws_a_forest_per_regime(tmp_path, monkeypatch):
    """Action-only and KARMA trained with the top 2 layers and with every layer: the four groups are
    no single comparison, so the overview draws each regime's own verdict (as `karma-probe study`)."""
    root = tmp_path / "runs"
    for k in (2, 0):
        for seed in (0, 1):
            for cond in ("action", "karma"):
                make_run(root, f"{cond}-L{k}-s{seed}", cond, seed=seed, users=50, n_items=200, train={"train_layers": k})
    at = open_page(app(root, monkeypatch, {"ref": "action-L2-s0"}), "overview")
    assert_clean(at)
    assert any("by training regime" in str(s.value) for s in at.subheader)
    forest = charts(at)[0]
    headings = [a["text"] for a in forest["layout"]["annotations"] if a["text"].startswith("<b>")]
    assert "<b>top 2 layers · Attention</b>" in headings and "<b>every layer · Attention</b>" in headings
