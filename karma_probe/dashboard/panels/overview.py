"""Overview: with action-only and KARMA runs selected, first the verdict as a picture (the forest plot
of the paper's claims, raw and Holm-corrected: figures.claims_forest, the PDF's page one); then every
run's headline metrics, each one's change against the reference run, with several seeds of a
condition selected the per-condition table (mean ± 95 % CI over seeds), and the claims as a table
with effect, raw and corrected 95 % CI, verdicts and detection limits (the same entries as
summary.json's ``verdict``: karma_probe.report.study). Runs of several training regimes selected
(top 8 layers and every layer): a forest per regime instead, as ``karma-probe study`` draws it."""

import pandas as pd
import streamlit as st

from karma_probe.analyzers.catalogue import format_delta, format_value
from karma_probe.core.errors import BadInput
from karma_probe.dashboard import server as dashboard
from karma_probe.report import figures, study
from karma_probe.report.figures.style import YELLOW, verdict_colour
from karma_probe.report.results import changes, direction, metric_names

view = dashboard.current()
ref = view.reference
st.title("Overview")
st.caption(f"Headline metrics (analysis.json `summary`) of the selected runs, with the change against the "
           f"reference run **{ref.name}** in brackets. Green: better, red: worse, by each metric's declared "
           "direction (`higher_is_better`; hover a column name).")

FOREST_CAPTION = ("One row per claim: its paired effect (> 0: the paper's direction) with the raw 95 % CI (thick) and "
                  "the Holm-corrected CI (thin), coloured by the corrected verdict; hover a dot for the numbers in the "
                  "metric's own units.")
claims = study.verdict(view.runs)
try:
    regimes = study.split(view.runs)
except BadInput:  # no trained run, or one that does not say which layers it trained
    regimes = {}
if claims:
    st.subheader("The paper's claims: action-only vs KARMA, raw and Holm-corrected")
    st.caption(FOREST_CAPTION + " The table below gives them all.")
    dashboard.plot(figures.claims_forest(claims), "overview-forest")
elif len(regimes) > 1:  # e.g. top 8 layers and every layer selected: one comparison per regime, never pooled
    by_regime = {study.regime_name(k): v for k, rs in regimes.items() if (v := study.verdict(rs))}
    if by_regime:
        st.subheader("The paper's claims by training regime: action-only vs KARMA, raw and Holm-corrected")
        st.caption(FOREST_CAPTION + " Each regime (the layers its runs train) is its own comparison, corrected "
                   "on its own (`karma-probe study` writes the same as a report).")
        dashboard.plot(figures.claims_forest_regimes(by_regime), "overview-forest-regimes")

metrics = metric_names(view.runs)
rows, verdicts = [], []
for run in view.runs:
    is_ref = run.name == ref.name
    chain = run.chain  # rundir.chain: a STALE run is shown, marked with why
    row = {"run": run.name, "condition": run.condition,
           "status": str(chain) if not chain.trusted else "reference" if is_ref else chain.state}
    change = changes(run, ref, metrics, view.runs)
    for metric, c in change.items():
        text = format_value(c.value) if c.value == c.value else "–"  # NaN: the run lacks this metric
        row[metric] = text if is_ref or c.delta != c.delta else f"{text} ({format_delta(c.delta)})"
    rows.append(row)
    verdicts.append({m: c.verdict for m, c in change.items()} | ({} if chain.trusted else {"status": "broken"}))
for broken in view.listing.broken:  # a run that did not load keeps its row, with the reason
    rows.append({"run": broken.name, "condition": "", "status": f"not loaded: {broken.reason}"})
    verdicts.append({"status": "broken"})

table = pd.DataFrame(rows, columns=["run", "condition", "status", *metrics]).fillna("")


def fill(word: str | None) -> str:
    colour = YELLOW if word == "broken" else verdict_colour(word or "")
    return f"background-color: {colour}" if colour else ""


styles = pd.DataFrame([[fill(v.get(col)) for col in table.columns] for v in verdicts], columns=table.columns)
notes = {True: "higher is better", False: "lower is better", None: "direction not declared"}
st.dataframe(table.style.apply(lambda _: styles, axis=None), hide_index=True,
             column_config={m: st.column_config.TextColumn(m, help=notes[direction(view.runs, m)]) for m in metrics})

for broken in view.listing.broken:
    st.warning(f"**{broken.name}** was not loaded: {broken.reason}")

if study.is_study(view.runs):  # several seeds of a condition: the same table as the study's PDF page one
    st.subheader("By condition: mean ± 95 % CI over seeds")
    st.caption("Each cell: the condition's mean over its selected runs ± the half-width of the 95 % t-interval "
               "over seeds (one run: its own bootstrap CI, or the value alone).")
    header, rows = study.condition_rows(view.runs)
    st.dataframe(pd.DataFrame([r for r in rows if any(r[1:])], columns=header), hide_index=True)


def verdict_table(rows: list[list[str]], columns: list[str]) -> None:
    """A table of strings whose verdict columns (named "verdict" or "…: verdict") are coloured."""
    frame = pd.DataFrame(rows, columns=columns)
    styles = pd.DataFrame([[fill(v) if c.endswith("verdict") else "" for c, v in row.items()]
                           for _, row in frame.iterrows()], columns=columns)
    st.dataframe(frame.style.apply(lambda _: styles, axis=None), hide_index=True)


if claims:
    st.subheader("Claims: action-only vs KARMA")
    st.caption("effect > 0 is the claimed direction (action-only collapses relative to KARMA); a claim holds "
               "only when its whole 95 % CI is above 0. Detectable: the smallest paired difference the seed spread "
               "could detect, t(0.975, n-1)·s/√n, in brackets at 80 % power; Holm: the same at the claim's "
               "corrected level. " + study.METHOD)
    verdict_table(study.claim_rows(view.runs, claims), list(study.CLAIM_COLUMNS))

header, rows = study.ablation_rows(view.runs)
if rows:
    st.subheader("Each regularizer alone: action-only vs gen only, rec only and KARMA")
    st.caption("The claims again, against each regularized condition: effect > 0 is the paper's direction. "
               "If one regularizer alone matches KARMA's columns, it explains KARMA's effect.")
    verdict_table(rows, header)

if metrics:
    metric = st.selectbox("compare one metric", metrics, index=metrics.index("sink_mass") if "sink_mass" in metrics else 0)
    bars = figures.condition_bars if study.is_study(view.runs) else figures.metric_bars
    dashboard.plot(bars(view.runs, metric), "overview-bars")
