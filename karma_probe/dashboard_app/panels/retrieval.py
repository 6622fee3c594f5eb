"""Retrieval: does the model still find the next item? HR@K / NDCG@K over the whole catalogue."""

import streamlit as st

from karma_probe import dashboard, figures
from karma_probe.analyzers.catalogue import by_family
from karma_probe.results import metric_names

view = dashboard.current()
st.title("Retrieval")

choice = st.columns(2)
split = choice[0].radio("split", ["test", "valid"], horizontal=True,
                        help="metrics.json; a run without it falls back to its test-split analysis summary")
name = choice[1].radio("metric", ["hr", "ndcg"], horizontal=True, format_func=str.upper)
dashboard.plot(figures.hr_at_k(view.runs, split=split, name=name), "at-k")

present = dict(by_family(metric_names(view.runs))).get("Retrieval", [])
if present:
    st.subheader("Headline numbers (test split, analysis.json summary)")
    columns = st.columns(min(len(present), 3))
    for i, metric in enumerate(present):
        dashboard.plot(figures.metric_bars(view.runs, metric), f"bars-{i}", columns[i % len(columns)])
