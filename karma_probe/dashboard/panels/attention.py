"""Attention sinks: first-token mass by layer, every head of every run, and one probe's full map.

A collapsed run piles attention onto token 0 (a bright first column) and a few other keys
(vertical "barcode" strips); the two maps side by side show the same probe, layer and head.
"""

import streamlit as st

from karma_probe.core.errors import BadInput
from karma_probe.dashboard import server as dashboard
from karma_probe.report import figures
from karma_probe.report.results import metric_names

view = dashboard.current()
st.title("Attention sinks")

per_head = metric_names(view.runs, per="head")
if not per_head:
    st.info("No per-head attention records in these runs' analysis.json (was the capture's attention analyzed?).")
    st.stop()
metric = st.selectbox("metric", per_head, index=per_head.index("sink_mass") if "sink_mass" in per_head else 0)
dashboard.plot(figures.metric_by_layer(view.runs, metric), "by-layer")

st.subheader(f"{metric} by layer and head")
st.caption("One colour scale for all runs, so equal colours mean equal values.")
columns = st.columns(min(len(view.runs), 3))
for i, spec in enumerate(figures.head_heatmaps(view.runs, metric)):
    dashboard.plot(spec, f"heads-{i}", columns[i % len(columns)])

st.subheader("One probe's attention map, two runs side by side")
names = [r.name for r in view.runs]
pick = st.columns(5)
left_name = pick[0].selectbox("left run", names, index=names.index(view.reference.name))
others = [i for i, n in enumerate(names) if n != left_name]
right_name = pick[1].selectbox("right run", names, index=others[-1] if others else 0)
pair = [next(r for r in view.runs if r.name == n) for n in (left_name, right_name)]

loaded = dashboard.each_run(view, pair, dashboard.maps, "no attention maps to show")
first = next(iter(loaded.values()))
n_layers, n_heads = first[0].attn.shape[:2]
strongest = figures.strongest_sink(pair[0]) or (0, 0)  # where a barcode is most likely to show
probe_index = pick[2].selectbox("probe", [p.index for p in first])
layer = pick[3].selectbox("layer", range(n_layers), index=min(strongest[0], n_layers - 1),
                          help="default: the left run's strongest sink head")
head = pick[4].selectbox("head", range(n_heads), index=min(strongest[1], n_heads - 1))

sides = st.columns(2)
for i, (side, run) in enumerate(zip(sides, pair)):
    probe = next((p for p in loaded.get(run.name, ()) if p.index == probe_index), None)
    if probe is None:
        side.warning(f"{run.name}: probe {probe_index} was not captured with full maps.")
        continue
    labels, note = (list(probe.labels), "") if probe.labels else dashboard.tokens(view, run, probe.input_ids)
    try:
        spec = figures.attention_map(probe, layer, head, labels, run.name)
    except BadInput as e:  # runs of different models: the other one may have fewer layers or heads
        side.warning(str(e))
        continue
    dashboard.plot(spec, f"map-{i}", side)
    if note:
        side.caption(note)
