"""Training: the loss terms over steps, and the metrics over intermediate checkpoints."""

import streamlit as st

from karma_probe.dashboard import server as dashboard
from karma_probe.report import figures
from karma_probe.report.figures.training import LOSS_KEYS

view = dashboard.current()
st.title("Training")

logged = [r for r in view.runs if r.train_log]
if logged:
    keys = st.multiselect("loss terms", LOSS_KEYS, default=["loss"],
                          help="l_act: action (InfoNCE); l_gen: history-conditioned generation; "
                               "l_rec: reconstruction from the interest embedding")
    dashboard.plot(figures.loss_curves(logged, keys or LOSS_KEYS), "losses")
    grads = figures.gradient_ratios(logged)
    if not grads.empty:  # runs with regularizers that logged per-loss gradient norms
        dashboard.plot(grads, "gradient ratios")
unlogged = [r.name for r in view.runs if not r.train_log]
if unlogged:
    st.caption(f"No train_log.jsonl (not trained here, e.g. a base run): {', '.join(unlogged)}")

st.subheader("Metrics over intermediate checkpoints")
tracked = list(dict.fromkeys(m for r in view.runs for t in r.analysis.trajectory for m in t["summary"]))
if not tracked:
    st.info("No trajectory in these runs' analysis.json: run `karma-probe analyze RUN --all-checkpoints`.")
    st.stop()
metrics = st.multiselect("metrics", tracked, default=[m for m in ("sink_mass", "hr@10") if m in tracked] or tracked[:1])
columns = st.columns(2)
for i, metric in enumerate(metrics):
    dashboard.plot(figures.metric_trajectory(view.runs, metric), f"trajectory-{i}", columns[i % 2])
