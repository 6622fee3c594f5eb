"""What the Streamlit dashboard (karma_probe/dashboard/app.py) may read, how it caches it, and which runs it shows.

The server reads only under the runs root it was started with (``-- --runs DIR``): every run dir
and every file is resolved, symlinks followed, and refused unopened when it leads outside
(results.confined). A query parameter that names a run (``?run=NAME&ref=NAME``) is checked the
same way, so a link cannot turn the dashboard into a file browser.

Loading is cached on file path + modification time (+ size), so a run re-analyzed while the
server is up shows its new numbers on the next rerun (and one re-captured or re-trained without
re-analysis is marked STALE: the capture and checkpoint state are stamped too). The listing goes through ``st.cache_data``;
attention maps and hidden states through ``st.cache_resource``, because ``cache_data`` hands out a
pickled copy on every rerun and a SmolLM2 capture holds hundreds of MB of maps. Nothing here
mutates a cached array.

The router draws the sidebar (``start``) and keeps the resulting ``View`` in session state;
every page begins with ``current()`` and draws with ``plot``. Pages stay thin: cached load →
filter → plot.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from karma_probe.core.errors import BadInput
from karma_probe.report import results
from karma_probe.report.figures import FigureSpec, to_plotly
from karma_probe.report.results import Run, RunListing
from karma_probe.rundir import RunPaths, layout
from karma_probe.rundir.capture import Hidden, ProbeMap

_VIEW = "karma_probe.view"  # session-state key of the current View


@dataclass(frozen=True)
class View:
    """The runs the user is looking at, as chosen in the sidebar."""

    root: Path                 # the runs root, resolved
    listing: RunListing        # every run under it: loaded ones and broken ones with reasons
    runs: tuple[Run, ...]      # the selected runs, in listing order
    reference: Run | None      # deltas are taken against this one (None when nothing is selected)


# --------------------------------------------------------------------------- the runs root

def runs_root(argv: list[str] | None = None) -> Path:
    """``--runs DIR`` from the script's arguments (``streamlit run karma_probe/dashboard/app.py -- --runs DIR``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not args.runs:
        raise BadInput("no runs directory: start the dashboard with `karma-probe dashboard --runs DIR`")
    root = Path(args.runs)
    if not root.is_dir():
        raise BadInput(f"{root}: no such runs directory")
    return root.resolve()


# --------------------------------------------------------------------------- cached loading

def _stamp(*files: Path) -> tuple:
    """Modification time and size of each file (None where missing): the cache keys' version."""
    out = []
    for f in files:
        try:
            s = f.stat()
            out.append((s.st_mtime_ns, s.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=8)
def _listing(root: str, stamp: tuple) -> RunListing:
    return results.list_runs(root, confine=True)


def listing(root: Path) -> RunListing:
    """``results.list_runs(root, confine=True)``, reloaded when any run's files change."""
    try:
        dirs = sorted(d for d in root.iterdir() if d.is_dir())
    except OSError as e:
        raise BadInput(f"{root}: cannot list the runs directory ({e})") from None
    stamp = tuple((d.name, _stamp(*(d / f for f in layout.RUN_FILES), *_chain_files(d))) for d in dirs)
    return _listing(str(root), stamp)


def _chain_files(run: Path) -> tuple[Path, ...]:
    """The files a run's chain status (rundir.chain) depends on besides RUN_FILES: a re-capture or a
    re-training changes their stamps, so the listing is reloaded and the run marked STALE."""
    paths = RunPaths(run)
    return (paths.manifest, *(paths.capture / layout.part_file(p) for p in layout.CAPTURE_PARTS), paths.state)


@st.cache_resource(show_spinner=False, max_entries=8)
def _maps(run_path: str, stamp: tuple) -> tuple[ProbeMap, ...]:
    return results.load_maps(run_path)


@st.cache_resource(show_spinner=False, max_entries=8)
def _hidden(run_path: str, stamp: tuple) -> Hidden:
    return results.load_hidden(run_path)


def maps(view: View, run: Run) -> tuple[ProbeMap, ...]:
    """The run's captured attention maps; BadInput (to show as a notice) when missing or outside the root."""
    f = results.confined(view.root, run.capture_dir / layout.MAPS_FILE)
    return _maps(str(run.path), _stamp(f))


def hidden(view: View, run: Run) -> Hidden:
    f = results.confined(view.root, run.capture_dir / layout.HIDDEN_FILE)
    return _hidden(str(run.path), _stamp(f))


@st.cache_data(show_spinner=False, max_entries=64)
def _tokens(run_path: str, ids: tuple[int, ...], stamp: tuple) -> list[str]:
    return results.decode_tokens(run_path, ids)


def tokens(view: View, run: Run, ids) -> tuple[list[str], str]:
    """Token labels for ``ids`` and a note ("" when decoded by the run's own tokenizer)."""
    ids = tuple(int(i) for i in ids)
    f = RunPaths(run.path).tokenizer
    if not (f.exists() or f.is_symlink()):
        return [str(i) for i in ids], f"{run.name}: no {layout.CHECKPOINT}/{layout.TOKENIZER}, tokens shown as ids"
    try:
        results.confined(view.root, f)
    except BadInput:  # e.g. a base run whose checkpoint/ links to the backbone elsewhere
        return [str(i) for i in ids], f"{run.name}: tokenizer lies outside the runs root, tokens shown as ids"
    return _tokens(str(run.path), ids, _stamp(f)), ""


# --------------------------------------------------------------------------- drawing

TOOLBAR_PX = 46  # Streamlit always shows plotly's toolbar (28 px, top right): titles start below it


def each_run(view: View, runs, load, missing: str) -> dict:
    """``{run name: load(view, run)}`` for the runs that have it (``load``: :func:`maps`,
    :func:`hidden`); a warning per run that does not, saying ``missing`` and why, and the page stops
    when none has it."""
    out = {}
    for run in runs:
        try:
            out[run.name] = load(view, run)
        except BadInput as e:
            st.warning(f"{run.name}: {missing}. {e}")
    if not out:
        st.stop()
    return out


def plot(spec: FigureSpec, key: str, where=st) -> None:
    """Draw a figure spec (karma_probe.report.figures) as an interactive plotly chart in ``where``."""
    fig = to_plotly(spec)
    fig.update_layout(title=dict(yref="container", y=1, yanchor="top", pad=dict(t=TOOLBAR_PX)),
                      margin=dict(t=fig.layout.margin.t + TOOLBAR_PX))
    where.plotly_chart(fig, key=key, config={"displaylogo": False})


# --------------------------------------------------------------------------- selection

def start() -> View:
    """Resolve the runs root, draw the sidebar (runs, reference) and remember the View for the pages.

    Stops the script with an error box when there is no usable runs root: nothing else can work.
    """
    try:
        root = runs_root()
        found = listing(root)
    except BadInput as e:
        st.error(str(e))
        st.stop()
    names = [r.name for r in found.ok]
    wanted, ref_wanted = _from_query(root, names)

    st.sidebar.caption(f"runs root: `{root}`")
    chosen = st.sidebar.multiselect("runs", names, default=wanted or names, key="runs",
                                    help="the runs every page compares; link to a choice with ?run=A&run=B&ref=A")
    reference = st.sidebar.selectbox("reference run", chosen, key="reference",
                                     index=chosen.index(ref_wanted) if ref_wanted in chosen else 0,
                                     help="deltas and colours on the overview are against this run")
    if found.broken:
        st.sidebar.warning(f"{len(found.broken)} run dir(s) could not be loaded; the overview says why.")
    by_name = {r.name: r for r in found.ok}
    view = View(root=root, listing=found, runs=tuple(r for r in found.ok if r.name in chosen),
                reference=by_name.get(reference))
    st.session_state[_VIEW] = view
    return view


def current() -> View:
    """The View the router drew for this rerun; a page with no runs selected says so and stops."""
    view = st.session_state.get(_VIEW)
    if view is None:  # a page script run without the router
        st.error("open the dashboard through its entry page: `karma-probe dashboard --runs DIR`")
        st.stop()
    if not view.runs:
        st.info(f"No run selected. Runs under `{view.root}` appear here once `karma-probe analyze` "
                "has written their analysis.json; pick them in the sidebar.")
        for broken in view.listing.broken:  # e.g. a run still training: say why it is not listed
            st.warning(f"**{broken.name}** was not loaded: {broken.reason}")
        st.stop()
    return view


def _from_query(root: Path, names: list[str]) -> tuple[list[str], str | None]:
    """Runs named by ``?run=`` / ``?ref=``; a value leading outside the root or naming no run gets a notice."""
    def check(value: str) -> str | None:
        try:
            results.confined(root, root / value)
        except BadInput as e:
            st.warning(f"Query parameter ignored: {e}")
            return None
        if value not in names:  # names are plain directory names: "a/../b" is not one
            st.warning(f"Query parameter ignored: {value!r} is not a loadable run under the runs root.")
            return None
        return value

    wanted = [n for v in st.query_params.get_all("run") if (n := check(v))]
    ref = st.query_params.get("ref")
    return list(dict.fromkeys(wanted)), check(ref) if ref else None
