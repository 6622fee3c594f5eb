"""karma_probe dashboard: the runs under one runs root, side by side.

Start it with ``karma-probe dashboard --runs DIR`` (or, from a clone, ``streamlit run dashboards/app.py
-- --runs DIR``, which runs this file). This file is only the router: the sidebar picks the runs and
the reference run for every page (karma_probe.dashboard.server.start), then st.navigation runs the chosen
page from panels/. The pages live in panels/, not pages/, because Streamlit would list a pages/
folder by itself whenever the router stops before st.navigation (e.g. on a missing runs root).
They are named by absolute path, next to this file, so the router works whichever script
Streamlit was started with.
"""

from pathlib import Path

import streamlit as st

from karma_probe.dashboard import server as dashboard

PANELS = Path(__file__).resolve().parent / "panels"

st.set_page_config(page_title="karma_probe", layout="wide")
dashboard.start()
st.navigation([
    st.Page(PANELS / "overview.py", title="Overview", icon=":material/table:", default=True),
    st.Page(PANELS / "attention.py", title="Attention sinks", icon=":material/grid_on:"),
    st.Page(PANELS / "geometry.py", title="Geometry", icon=":material/scatter_plot:"),
    st.Page(PANELS / "decodability.py", title="Decodability", icon=":material/text_fields:"),
    st.Page(PANELS / "retrieval.py", title="Retrieval", icon=":material/search:"),
    st.Page(PANELS / "training.py", title="Training", icon=":material/show_chart:"),
]).run()
