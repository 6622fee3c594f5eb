"""Retrieval: does the model still find the next item? HR@K / NDCG@K over the whole catalogue, and
each condition beside its nulls (random, popularity, Markov, the SASRec figure) with 95 % CIs."""

import pandas as pd
import streamlit as st

from karma_probe.analyzers.catalogue import by_family
from karma_probe.dashboard import server as dashboard
from karma_probe.report import figures, study
from karma_probe.report.results import metric_names

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
        bars = figures.condition_bars if study.is_study(view.runs) else figures.metric_bars
        dashboard.plot(bars(view.runs, metric), f"bars-{i}", columns[i % len(columns)])

nulls = study.null_rows(view.runs)
if nulls:
    st.subheader("Beside its nulls")
    st.caption("Test split (the user's history excluded): the baseline rankers scored on the same users. The "
               "SASRec figure is a reference measured elsewhere on the same split with nothing excluded "
               "(test_all), without a CI of its own. 'better' / 'worse' only when the 95 % CI of run − null "
               "excludes 0.")
    st.dataframe(pd.DataFrame(nulls, columns=list(study.NULL_COLUMNS)), hide_index=True)
