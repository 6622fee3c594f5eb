"""Decodability: can the interest embedding still be read back as the next item's text?

The decodability metrics per run, then each history's true next item next to what every run
decoded from its interest embedding (analysis.json ``samples.decoded``).
"""

import pandas as pd
import streamlit as st

from karma_probe.analyzers.catalogue import by_family, exact
from karma_probe.dashboard import server as dashboard
from karma_probe.report import figures
from karma_probe.report.figures.style import GREEN
from karma_probe.report.results import decoded_side_by_side, metric_names

view = dashboard.current()
st.title("Decodability")

present = dict(by_family(metric_names(view.runs))).get("Decodability", [])
if present:
    columns = st.columns(min(len(present), 2))
    for i, metric in enumerate(present):
        dashboard.plot(figures.metric_bars(view.runs, metric), f"bars-{i}", columns[i % len(columns)])

st.subheader("History → decoded text, next to the truth")
rows = decoded_side_by_side(view.runs)
if not rows:
    st.info("No decoded samples (analysis.json `samples.decoded`) in the selected runs.")
    st.stop()
names = [r.name for r in view.runs if any(r.analysis.samples.get("decoded") or [])]
shown = st.slider("samples", 1, len(rows), min(len(rows), 20)) if len(rows) > 1 else 1
table = pd.DataFrame(rows[:shown], columns=["history", "truth", *names])
st.caption("Green: the run decoded the true title exactly, by recon_exact's rule (genres, a trailing year, "
           "case and punctuation do not count); empty: the run has no sample for this history.")
styles = pd.DataFrame([[f"background-color: {GREEN}" if col in names and isinstance(row[col], str)
                        and exact(row["truth"], row[col]) else "" for col in table.columns]
                       for _, row in table.iterrows()], columns=table.columns)
st.dataframe(table.style.apply(lambda _: styles, axis=None), hide_index=True,
             column_config={"history": st.column_config.TextColumn(width="large")})
