"""Draw a FigureSpec: ``to_plotly`` for the dashboard, ``to_matplotlib`` for the PDF report.

Renderers only draw: every number (bins, colour limits, which points) was decided in the spec.
Each imports its plotting library when called, so the PDF path never needs plotly and the
dashboard never needs matplotlib's PDF backend.
"""

from __future__ import annotations

import html
import math

import numpy as np

from karma_probe.report.figures.spec import FigureSpec, Series

CMAP = "viridis"
ANNOTATE_MAX_CELLS = 150  # write values into heatmap cells only while they stay legible
MIN_TICK_PT, MAX_TICK_PT = 4.0, 8.0
PLOTLY_MAX_TICKS = 32  # labels per heatmap axis on screen; more overlap at dashboard widths
# reference lines (random, popularity, markov) in turn; black is the base run's (style.HUES)
DASHED_GREYS = ("gray", "darkgray", "dimgray")
MPL_DASHES = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-."}  # style.DASHES in matplotlib's names


# --------------------------------------------------------------------------- matplotlib

def to_matplotlib(spec: FigureSpec, ax=None):
    """Draw ``spec`` into ``ax`` (or a new 7x4.5 in Figure) and return the matplotlib Figure.

    Uses ``matplotlib.figure.Figure`` directly, not pyplot, so nothing global is created and
    many figures can be built in a server process without leaking.
    """
    if ax is None:
        from matplotlib.figure import Figure

        size = (7, 4.5)
        if spec.kind == "forest":  # a row per claim plus its numbers at the right: as tall and wide as it needs
            size = (11, 1.8 + 0.25 * (len(spec.rows) + len({r.group for r in spec.rows})))
        fig = Figure(figsize=size, layout="constrained")
        ax = fig.add_subplot()
    title = _mpl_text(spec.title) + (f"\n{_mpl_text(spec.note)}" if spec.note else "")
    ax.set_title(title, fontsize=9)
    if spec.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        return ax.figure
    ax.set_xlabel(_mpl_text(spec.x_label), fontsize=8)
    ax.set_ylabel(_mpl_text(spec.y_label), fontsize=8)
    ax.tick_params(labelsize=7)
    if spec.kind == "heatmap":
        _mpl_heatmap(spec, ax)
        return ax.figure
    if spec.kind == "forest":
        _mpl_forest(spec, ax)
        return ax.figure
    if spec.kind == "bar":
        _mpl_bars(spec, ax)
    dashed = iter(DASHED_GREYS * len(spec.series))
    for s in spec.series if spec.kind != "bar" else ():
        label = _mpl_text(s.name)
        if spec.kind == "line":
            colour, dash = _line_look(s, dashed)
            style = dict(marker="o" if len(s.x) <= 40 else None, markersize=3, linewidth=1.2,
                         linestyle=MPL_DASHES[dash], color=colour, label=label)
            if s.errors() is not None:
                ax.errorbar(s.x, s.y, yerr=np.vstack(s.errors()), capsize=2, elinewidth=0.8, **style)
            else:
                ax.plot(s.x, s.y, **style)
        elif spec.kind == "scatter":
            ax.scatter(s.x, s.y, s=8, alpha=0.7, label=label, color=s.look.colour if s.look else None)
        elif spec.kind == "hist":
            half = (spec.bin_width or 0) / 2
            ax.stairs(s.y, np.append(s.x - half, s.x[-1] + half), fill=True, alpha=0.35, label=label,
                      color=s.look.colour if s.look else None)
    if spec.log_y:
        ax.set_yscale("log")
    if spec.log_x:
        ax.set_xscale("log")
        _mpl_label_x_values(spec, ax)
    if spec.integer_x:
        from matplotlib.ticker import MaxNLocator

        # steps 1-2-5-10: checkpoints every 100 steps tick at 0, 100, 200 rather than 0, 60, 120
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    if len(spec.series) > 1 or (spec.series and spec.kind == "scatter"):
        ax.legend(fontsize=7, frameon=False, ncol=1 if len(spec.series) <= 8 else 2)
    ax.grid(alpha=0.3, linewidth=0.5)
    return ax.figure


def _line_look(s: Series, dashed_greys) -> tuple[str | None, str]:
    """(colour, dash) of a line: its Look; a reference line: the next grey, dashed; else the
    library's colour cycle (None), solid."""
    if s.look is not None:
        return s.look.colour, s.look.dash
    if s.dashed:
        return next(dashed_greys), "dash"
    return None, "solid"


def _mpl_label_x_values(spec: FigureSpec, ax) -> None:
    """On a log axis, tick exactly the x values drawn (K = 10, 50, 200), not powers of ten."""
    values = sorted({float(x) for s in spec.series for x in s.x})
    if len(values) <= 12:
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()


def _mpl_bars(spec: FigureSpec, ax) -> None:
    categories = list(dict.fromkeys(str(x) for s in spec.series for x in s.x))
    width = 0.8 / len(spec.series)
    for i, s in enumerate(spec.series):
        values = dict(zip((str(x) for x in s.x), s.y))
        pos = np.arange(len(categories)) + (i - (len(spec.series) - 1) / 2) * width
        if s.colours is not None:  # a colour per bar: each run's or condition's (style.run_look)
            by_x = dict(zip((str(x) for x in s.x), s.colours))
            color = [by_x.get(c, "lightgray") for c in categories]
        elif s.look is not None:
            color = s.look.colour
        else:  # one series without colours: one colour per bar from the cycle
            color = [f"C{j % 10}" for j in range(len(categories))] if len(spec.series) == 1 else None
        errors = s.errors()
        yerr = None
        if errors is not None:
            below, above = (dict(zip((str(x) for x in s.x), e)) for e in errors)
            yerr = np.array([[below.get(c, 0.0) for c in categories], [above.get(c, 0.0) for c in categories]])
        ax.bar(pos, [values.get(c, np.nan) for c in categories], width=width, color=color, label=_mpl_text(s.name),
               yerr=yerr, capsize=3, error_kw={"elinewidth": 0.8})
    ax.set_xticks(np.arange(len(categories)), [_mpl_text(c) for c in categories])


def _mpl_heatmap(spec: FigureSpec, ax) -> None:
    import matplotlib

    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="lightgray")  # grey: cells without a record
    m = np.ma.masked_invalid(spec.matrix)
    image = ax.imshow(m, aspect="auto", interpolation="nearest", cmap=cmap, vmin=spec.vmin, vmax=spec.vmax)
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.ax.tick_params(labelsize=7)
    if spec.color_label:
        bar.set_label(_mpl_text(spec.color_label), fontsize=8)
    width_in, height_in = _axes_inches(ax)
    # upright numbers (head 0..8), sideways words (tokens) so neighbours do not overlap
    _mpl_ticks(ax.set_xticks, spec.x_ticks, width_in, rotation=90 if max(map(len, spec.x_ticks), default=0) > 3 else 0)
    _mpl_ticks(ax.set_yticks, spec.y_ticks, height_in, rotation=0)
    rows, cols = spec.matrix.shape
    if spec.annotate and rows * cols <= ANNOTATE_MAX_CELLS:
        lo, hi = image.get_clim()
        for (i, j), v in np.ndenumerate(spec.matrix):
            if math.isfinite(v):
                light = (v - lo) / ((hi - lo) or 1) > 0.6  # viridis is light at the top: dark text there
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=6,
                        color="black" if light else "white")


def _mpl_forest(spec: FigureSpec, ax) -> None:
    """Rows top down (spec.forest_layout): the wide interval thin, the narrow one thick, the effect a
    dot, coloured by verdict; zero a vertical line; family headings and each row's text beside it."""
    from matplotlib.lines import Line2D

    from karma_probe.report.figures.spec import forest_layout
    from karma_probe.report.figures.style import VERDICT_INK, VERDICT_LEGEND

    ys, headings = forest_layout(spec.rows)
    ax.axvline(0, color="black", linewidth=0.8, zorder=1)
    for row, y in zip(spec.rows, ys):
        colour = VERDICT_INK[row.verdict]
        if math.isfinite(row.low_wide) and math.isfinite(row.high_wide):
            ax.hlines(y, row.low_wide, row.high_wide, color=colour, linewidth=1.0, zorder=2)
        if math.isfinite(row.low) and math.isfinite(row.high):
            ax.hlines(y, row.low, row.high, color=colour, linewidth=4.5, alpha=0.85, zorder=3)
        if math.isfinite(row.x):
            ax.plot([row.x], [y], "o", color=colour, markersize=5, markeredgecolor="white", zorder=4)
        ax.text(1.01, y, _mpl_text(row.text), transform=ax.get_yaxis_transform(), fontsize=6.5, va="center",
                ha="left", color="dimgray")
    ax.set_yticks(ys, [_mpl_text(r.label) for r in spec.rows], fontsize=7)
    for group, y in headings:
        ax.text(-0.01, y, _mpl_text(group), transform=ax.get_yaxis_transform(), fontsize=8, fontweight="bold",
                va="center", ha="right")
    ax.set_ylim(min(ys) - 0.8, 0.8)
    if spec.x_tick_values:
        ax.set_xticks(spec.x_tick_values, [_mpl_text(t) for t in spec.x_ticks], fontsize=7)
    present = list(dict.fromkeys(r.verdict for r in spec.rows))
    ax.legend([Line2D([], [], color=VERDICT_INK[v], marker="o", linewidth=3) for v in present],
              [VERDICT_LEGEND[v] for v in present], fontsize=7, frameon=False, loc="upper center",
              bbox_to_anchor=(0.5, -0.07), ncol=len(present))
    ax.grid(axis="x", alpha=0.3, linewidth=0.5)


def _mpl_ticks(set_ticks, labels: tuple[str, ...], length_in: float, rotation: int) -> None:
    """Every label when they fit at >= MIN_TICK_PT, else every k-th one (positions stay exact)."""
    if not labels:
        return
    spacing_pt = length_in * 72 / len(labels)
    size = min(MAX_TICK_PT, spacing_pt * 0.85)
    step = 1 if size >= MIN_TICK_PT else math.ceil(MIN_TICK_PT / (spacing_pt * 0.85))
    positions = list(range(0, len(labels), step))
    set_ticks(positions, [_mpl_text(_short(labels[p])) for p in positions],
              fontsize=max(size, MIN_TICK_PT), rotation=rotation)


def _axes_inches(ax) -> tuple[float, float]:
    box = ax.get_position()
    w, h = ax.figure.get_size_inches()
    return box.width * w, box.height * h


def _short(label: str, limit: int = 14) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _mpl_text(s: str) -> str:
    # "$" would switch matplotlib into mathtext and fail on token text like "$5"
    return str(s).replace("$", r"\$")


# --------------------------------------------------------------------------- plotly

def to_plotly(spec: FigureSpec):
    """Build an interactive ``plotly.graph_objects.Figure`` of ``spec``."""
    import plotly.graph_objects as go

    fig = go.Figure()
    title = _html(spec.title) + (f"<br><sup>{_html(spec.note)}</sup>" if spec.note else "")
    fig.update_layout(title=title, xaxis_title=_html(spec.x_label), yaxis_title=_html(spec.y_label),
                      template="plotly_white", margin=dict(l=60, r=20, t=60, b=50))
    if spec.empty:
        fig.add_annotation(text="no data", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        return fig
    if spec.kind == "heatmap":
        return _plotly_heatmap(spec, fig, go)
    if spec.kind == "forest":
        return _plotly_forest(spec, fig, go)
    dashed = iter(DASHED_GREYS * len(spec.series))
    for s in spec.series:
        name = _html(s.name)
        errors = s.errors()
        error_y = None if errors is None else dict(type="data", symmetric=False, array=errors[1].tolist(),
                                                   arrayminus=errors[0].tolist(), visible=True)
        colour = s.look.colour if s.look else None
        if spec.kind == "line":
            colour, dash = _line_look(s, dashed)
            fig.add_trace(go.Scatter(x=s.x, y=s.y, name=name, mode="lines+markers" if len(s.x) <= 40 else "lines",
                                     line=dict(dash=dash, color=colour), error_y=error_y))
        elif spec.kind == "scatter":
            fig.add_trace(go.Scatter(x=s.x, y=s.y, name=name, mode="markers",
                                     marker=dict(size=5, opacity=0.7, color=colour)))
        elif spec.kind == "hist":
            fig.add_trace(go.Bar(x=s.x, y=s.y, name=name, width=spec.bin_width, opacity=0.5, marker_color=colour))
        elif spec.kind == "bar":
            colors = list(s.colours) if s.colours is not None else colour  # as in _mpl_bars
            if colors is None and len(spec.series) == 1:
                from plotly.colors import qualitative

                colors = [qualitative.Plotly[j % len(qualitative.Plotly)] for j in range(len(s.x))]
            fig.add_trace(go.Bar(x=[_html(x) for x in s.x], y=s.y, name=name, marker_color=colors, error_y=error_y))
    fig.update_layout(barmode="overlay" if spec.kind == "hist" else "group")
    if spec.log_y:
        fig.update_yaxes(type="log")
    if spec.log_x:
        fig.update_xaxes(type="log")
    if spec.integer_x:
        xs = [float(x) for s in spec.series for x in s.x]
        # "d" alone prints plotly's automatic half steps on a short axis as repeated labels (0 1 1 2)
        fig.update_xaxes(tickformat="d", **({"dtick": 1} if xs and max(xs) - min(xs) <= 10 else {}))
    return fig


def _plotly_heatmap(spec: FigureSpec, fig, go):
    rows, cols = spec.matrix.shape
    # numeric axes with tick text: plotly would merge repeated category labels (a token seen twice)
    hover = None
    if spec.x_ticks and spec.y_ticks:
        hover = [[f"{_html(spec.y_ticks[i])} → {_html(spec.x_ticks[j])}" for j in range(cols)] for i in range(rows)]
    z = np.where(np.isfinite(spec.matrix), spec.matrix, None)
    fig.add_trace(go.Heatmap(z=z.tolist(), x=list(range(cols)), y=list(range(rows)), zmin=spec.vmin, zmax=spec.vmax,
                             colorscale=CMAP.capitalize(), colorbar=dict(title=_html(spec.color_label)),
                             text=hover, hovertemplate=("%{text}<br>" if hover else "") + "%{z:.4f}<extra></extra>",
                             texttemplate="%{z:.3g}" if spec.annotate and rows * cols <= ANNOTATE_MAX_CELLS else None))
    fig.update_yaxes(autorange="reversed")
    if spec.x_ticks:
        fig.update_xaxes(tickmode="array", **_plotly_ticks(spec.x_ticks))
    if spec.y_ticks:
        fig.update_yaxes(tickmode="array", **_plotly_ticks(spec.y_ticks))
    return fig


def _plotly_forest(spec: FigureSpec, fig, go):
    """As :func:`_mpl_forest`: per verdict one trace of thin wide intervals, one of thick narrow ones
    and one of dots (hover: the row's text); zero a vertical line; family headings as annotations."""
    from karma_probe.report.figures.spec import forest_layout
    from karma_probe.report.figures.style import VERDICT_INK, VERDICT_LEGEND

    ys, headings = forest_layout(spec.rows)
    for verdict in dict.fromkeys(r.verdict for r in spec.rows):
        mine = [(r, y) for r, y in zip(spec.rows, ys) if r.verdict == verdict]
        colour = VERDICT_INK[verdict]
        for lo, hi, width, show in (("low_wide", "high_wide", 1.5, False), ("low", "high", 7, False)):
            xs, yy = [], []
            for r, y in mine:
                a, b = getattr(r, lo), getattr(r, hi)
                if math.isfinite(a) and math.isfinite(b):
                    xs += [a, b, None]
                    yy += [y, y, None]
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=yy, mode="lines", line=dict(color=colour, width=width),
                                         opacity=0.85, hoverinfo="skip", showlegend=show, legendgroup=verdict))
        dots = [(r, y) for r, y in mine if math.isfinite(r.x)]
        fig.add_trace(go.Scatter(x=[r.x for r, _ in dots] or [None], y=[y for _, y in dots] or [None], mode="markers",
                                 marker=dict(color=colour, size=9, line=dict(color="white", width=1)),
                                 name=_html(VERDICT_LEGEND[verdict]), legendgroup=verdict,
                                 text=[_html(f"{r.label}: {r.text}") for r, _ in dots],
                                 hovertemplate="%{text}<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="black", width=1))
    fig.update_yaxes(tickmode="array", tickvals=ys, ticktext=[_html(r.label) for r in spec.rows],
                     range=[min(ys) - 0.8, 0.8], showgrid=False)
    if spec.x_tick_values:
        fig.update_xaxes(tickmode="array", tickvals=list(spec.x_tick_values), ticktext=[_html(t) for t in spec.x_ticks])
    for group, y in headings:
        fig.add_annotation(text=f"<b>{_html(group)}</b>", x=0, xref="paper", xanchor="right", y=y, yref="y",
                           showarrow=False, xshift=-8)
    fig.update_layout(height=max(360, 28 * (len(ys) + len(headings)) + 120), legend=dict(orientation="h", y=1.02,
                                                                                          yanchor="bottom"),
                      margin=dict(l=230, r=20, t=80, b=50))
    return fig


def _plotly_ticks(labels: tuple[str, ...]) -> dict:
    """Every label up to PLOTLY_MAX_TICKS, else every k-th (as _mpl_ticks does): a 100-token map
    labelled at every position is an unreadable smear, and the hover text names every cell."""
    step = math.ceil(len(labels) / PLOTLY_MAX_TICKS)
    positions = list(range(0, len(labels), step))
    return {"tickvals": positions, "ticktext": [_html(labels[p]) for p in positions]}


def _html(s: str) -> str:
    # plotly treats text as HTML: a token like "<|endoftext|>" would vanish unescaped
    return html.escape(str(s), quote=False)
