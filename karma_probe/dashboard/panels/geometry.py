"""Geometry: is the embedding space still spread out, or collapsed onto a few directions?

Spectra and pairwise cosines of one embedding set across runs, then each run's items and
interests on their first two principal components (capture/hidden.safetensors).
"""

import streamlit as st

from karma_probe.core.errors import BadInput
from karma_probe.dashboard import server as dashboard
from karma_probe.report import figures
from karma_probe.report.results import metric_names

view = dashboard.current()
st.title("Geometry")

per_layer = [m for m in metric_names(view.runs, per="layer") if m not in metric_names(view.runs, per="head")]
if per_layer:
    metric = st.selectbox("by-layer metric", per_layer, index=per_layer.index("aniso_cos") if "aniso_cos" in per_layer else 0)
    dashboard.plot(figures.metric_by_layer(view.runs, metric), "by-layer")

hidden = dashboard.each_run(view, view.runs, dashboard.hidden, "no embeddings to show")

choice = st.columns([2, 3])
kind = choice[0].radio("embedding set", ["interest", "items", "marker hidden state"], horizontal=True)
if kind == "marker hidden state":
    n_states = min(h.marker_hidden.shape[1] for h in hidden.values())
    layer = choice[1].slider("residual stream index (0 = token embeddings, l + 1 = after layer l)",
                             0, n_states - 1, n_states - 1)
    sets = {name: h.marker_hidden[:, layer] for name, h in hidden.items()}  # (N, d)
    label = f"marker hidden state {layer}"
else:
    sets = {name: getattr(h, kind) for name, h in hidden.items()}  # (N, e) or (n_items, e)
    label = f"{kind} embeddings"

try:
    looks = figures.run_looks(view.runs)
    spectrum = figures.singular_spectrum(sets, f"{label}: singular value spectrum", looks)
    cosines = figures.cosine_histogram(sets, title=f"{label}: pairwise cosine similarity", looks=looks)
except BadInput as e:  # e.g. a capture of a single probe has no spread to measure
    st.warning(f"Not available: {e}")
else:
    left, right = st.columns(2)
    dashboard.plot(spectrum, "spectrum", left)
    dashboard.plot(cosines, "cosines", right)

st.subheader("Items and interests, first two principal components")
st.caption("Coloured by role (interest, target item, catalogue item): the capture records no item genres, "
           "so role is the label every run has.")
columns = st.columns(min(len(hidden), 3))
for i, (name, h) in enumerate(hidden.items()):
    try:
        spec = figures.role_pca(h.items, h.interest, h.targets, title=f"{name}: PCA")
    except BadInput as e:
        columns[i % len(columns)].warning(f"{name}: {e}")
        continue
    dashboard.plot(spec, f"pca-{i}", columns[i % len(columns)])
