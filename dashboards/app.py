"""karma_probe dashboard: the runs under one runs root, side by side.

Start it with ``karma-probe dashboard --runs DIR`` (or ``streamlit run dashboards/app.py -- --runs DIR``).
This file is only the router: the sidebar picks the runs and the reference run for every page
(karma_probe.dashboard.start), then st.navigation runs the chosen page from panels/. The pages
live in panels/, not pages/, because Streamlit would list a pages/ folder by itself whenever the
router stops before st.navigation (e.g. on a missing runs root).
"""

import streamlit as st

from karma_probe import dashboard

st.set_page_config(page_title="karma_probe", layout="wide")
dashboard.start()
st.navigation([
    st.Page("panels/overview.py", title="Overview", icon=":material/table:", default=True),
    st.Page("panels/attention.py", title="Attention sinks", icon=":material/grid_on:"),
    st.Page("panels/geometry.py", title="Geometry", icon=":material/scatter_plot:"),
    st.Page("panels/decodability.py", title="Decodability", icon=":material/text_fields:"),
    st.Page("panels/retrieval.py", title="Retrieval", icon=":material/search:"),
    st.Page("panels/training.py", title="Training", icon=":material/show_chart:"),
]).run()
