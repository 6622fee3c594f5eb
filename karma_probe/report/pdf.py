"""The PDF diagnostic report: a verdict, one section per metric family, and an appendix.

Page one answers "did this run collapse less than that one?": each headline metric of every run,
its change against the first run, and better / worse by the metric's own declared direction;
with an action-only and a KARMA run among them, the next pages give each of the paper's claims as
a forest plot (figures.claims_forest: effect, raw and Holm-corrected CI, coloured by verdict) and
as a table (karma_probe.report.study, the same entries as summary.json's ``verdict``). A study with
several seeds of a condition opens with that forest plot instead; its tables (the condition
table, mean ± 95 % CI over seeds, the claims and the ablations) follow as the appendix. It gets
condition bars, and the per-run pages (layers, heads, maps, embeddings, decoded samples, losses)
for one run of each condition, its lowest seed. Bar charts carry each run's CI as error bars. The sections then show the evidence, drawn by the same figure functions as the dashboard
(karma_probe.report.figures), so a number in the PDF and on screen cannot disagree. A section whose data
are missing (no captures, no training log) says so in one line instead of failing the report.
"""

from __future__ import annotations

import json
import math
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from karma_probe.analyzers.catalogue import by_family, exact, format_delta, format_value
from karma_probe.core.errors import BadInput
from karma_probe.report import figures, study
from karma_probe.report.figures.spec import FigureSpec
from karma_probe.report.figures.style import GREY, verdict_colour
from karma_probe.report.results import Run, load_hidden, load_maps, map_labels, verdict
from karma_probe.rundir import atomic_path, now

PAGE = (11.69, 8.27)  # A4 landscape, inches
TABLE_ROWS = 30       # verdict rows per page before it continues on the next
TEXT_LINES, TEXT_WIDTH = 58, 150  # monospace pages (samples, appendix)

@dataclass(frozen=True)
class Written:
    path: Path
    pages: tuple[str, ...]  # the title of every page, in order


def write_report(runs: Sequence[Run], out: str | Path, probes: int = 2, samples: int = 6,
                 layer: int | None = None, head: int | None = None,
                 first_page: tuple[str, str, list[str], list[list[str]]] | None = None) -> Written:
    """Render the report for ``runs`` (the first is the reference for deltas) to ``out`` atomically.

    ``first_page``: (title, introduction, header, rows) of a table page put first (``diagnose``'s
    verdict per metric), continued over as many pages as its rows need."""
    if not runs:
        raise BadInput("report: give at least one run")
    out = Path(out)
    if out.is_dir():
        raise BadInput(f"{out}: is a directory; give a file name like report.pdf")
    runs = _unique_names(runs)
    with _document(out, runs, "karma_probe diagnostic report", ", ".join(r.name for r in runs),
                   "karma-probe report") as pages:
        if first_page is not None:
            title, intro, header, rows = first_page
            for start in range(0, max(len(rows), 1), TABLE_ROWS):
                _table_page(pages, title + (" (continued)" if start else ""), intro, header,
                            rows[start:start + TABLE_ROWS], widths=FIRST_PAGE_WIDTHS, left_columns=(0, 1, 2, 7))
        shown = study.representatives(runs)  # the runs of the per-run pages
        claims = study.verdict(runs)
        tables_last = study.is_study(runs) and bool(claims)
        if tables_last:  # page one is the verdict as a picture; the tables go to the appendix
            _forest(pages, claims)
        elif study.is_study(runs):  # seeds, but no action-only vs KARMA: the condition table leads
            _study_table(pages, runs, shown)
            _ablations(pages, runs)
        else:
            _verdict(pages, runs)
            _forest(pages, claims)
            _claims(pages, runs, claims)
            _ablations(pages, runs)
        _attention(pages, runs, shown, probes, layer, head)
        _geometry(pages, runs, shown)
        _decodability(pages, runs, shown, samples)
        _family_overview(pages, runs, "Knowledge")
        _retrieval(pages, runs, shown)
        if _family_metrics(runs, "Other"):  # metrics the catalogue does not know (an older or newer analysis.json)
            _family_overview(pages, runs, "Other")
        _training(pages, runs, shown)
        if tables_last:
            _study_table(pages, runs, shown)
            _claims(pages, runs, claims)
            _ablations(pages, runs)
        _appendix(pages, runs)
    return Written(path=out, pages=tuple(pages.titles))


def write_study_report(regimes: dict[str, Sequence[Run]], verdicts: dict[str, list[dict]],
                       trajectories: Sequence[FigureSpec], out: str | Path) -> Written:
    """The combined report of a study in several training regimes (workflows.regimes): page one the
    verdict of every regime as one forest plot, then ``trajectories`` (each metric over training in
    every regime), each regime's claims table, and where each regime's full report is.
    ``regimes``: ``{name: runs}``; ``verdicts``: ``{name: study.verdict entries}``."""
    runs = _unique_names([r for rs in regimes.values() for r in rs])
    out = Path(out)
    with _document(out, runs, "karma_probe study report by training regime", ", ".join(regimes),
                   "karma-probe study") as pages:
        if any(verdicts.values()):
            with pages.page(FOREST_TITLE + ", by training regime") as fig:
                figures.to_matplotlib(figures.claims_forest_regimes(verdicts), ax=fig.add_subplot())
        if trajectories:
            pages.grid("Training: each metric over steps, action-only and KARMA in every regime", trajectories, cols=2)
        for n, rs in regimes.items():
            _claims(pages, rs, verdicts.get(n) or [], where=n)
        pages.text("Each regime's full report", [
            f"{n}: its folder's report.pdf, summary.json and summary.md ({len(rs)} runs: "
            + ", ".join(r.name for r in rs) + ")" for n, rs in regimes.items()])
    return Written(path=out, pages=tuple(pages.titles))


@contextmanager
def _document(out: Path, runs: Sequence[Run], title: str, subject: str, creator: str) -> Iterator["_Pages"]:
    """An open PDF written atomically to ``out``: its pages (headed for ``runs``), opening with a
    warning page for any run that is not trusted (STALE / BROKEN)."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    # TrueType fonts (42), not Type 3: the text stays searchable and extractable
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.size": 8}), atomic_path(out, ".pdf") as tmp:
        with PdfPages(tmp, metadata={"Title": title, "Subject": subject, "Creator": creator}) as pdf:
            pages = _Pages(pdf, runs)
            _untrusted(pages, runs)
            yield pages


# --------------------------------------------------------------------------- pages

class _Pages:
    """Adds a header and a page number to every page and remembers the titles."""

    def __init__(self, pdf, runs: Sequence[Run]):
        self.pdf, self.titles = pdf, []
        names = " vs ".join(r.name for r in runs)
        if study.is_study(runs):  # say what it is, not every run
            names = f"{len(runs)} runs: " + ", ".join(f"{c} ×{len(rs)}" for c, rs in study.by_condition(runs).items())
        self.header = "karma_probe report · " + names

    @contextmanager
    def page(self, title: str, layout: str | None = "constrained") -> Iterator:
        """A new page; ``layout=None`` for pages placed by hand (tables, text), which have no grid."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=PAGE, layout=layout)
        if layout == "constrained":
            fig.get_layout_engine().set(rect=(0, 0.025, 1, 0.975))  # keep clear of the footer line
        yield fig
        fig.suptitle(_plain(title), fontsize=13, fontweight="bold", x=0.01, ha="left")
        fig.text(0.01, 0.005, _plain(self.header), fontsize=6, color="gray", ha="left", va="bottom")
        fig.text(0.99, 0.005, f"page {len(self.titles) + 1}", fontsize=6, color="gray", ha="right", va="bottom")
        self.pdf.savefig(fig)
        self.titles.append(title)

    def note(self, title: str, text: str) -> None:
        """A page that says what is missing and how to get it."""
        with self.page(title, layout=None) as fig:
            fig.text(0.5, 0.5, _plain(text), ha="center", va="center", fontsize=11, color="dimgray", wrap=True)

    def grid(self, title: str, specs: Sequence[FigureSpec], cols: int = 3, rows: int = 2) -> None:
        """Small multiples, ``rows x cols`` per page, continued on further pages as needed."""
        per_page = rows * cols
        for start in range(0, len(specs), per_page):
            chunk = specs[start:start + per_page]
            c = min(cols, len(chunk))
            r = math.ceil(len(chunk) / c)
            with self.page(title + (" (continued)" if start else "")) as fig:
                axes = fig.subplots(r, c, squeeze=False).ravel()
                for ax, spec in zip(axes, chunk):
                    figures.to_matplotlib(spec, ax=ax)
                for ax in axes[len(chunk):]:
                    ax.set_visible(False)

    def text(self, title: str, lines: Sequence[str]) -> None:
        """Monospace text, wrapped and continued over as many pages as it needs."""
        wrapped = [w for line in lines for w in (textwrap.wrap(line, TEXT_WIDTH, subsequent_indent="    ",
                                                               drop_whitespace=False) or [""])]
        for start in range(0, max(len(wrapped), 1), TEXT_LINES):
            with self.page(title + (" (continued)" if start else ""), layout=None) as fig:
                fig.text(0.01, 0.93, _plain("\n".join(wrapped[start:start + TEXT_LINES])), family="monospace",
                         fontsize=7, va="top", ha="left", linespacing=1.35)


# --------------------------------------------------------------------------- page one

def verdict_rows(runs: Sequence[Run]) -> list[list[str]]:
    """The verdict table as strings: metric, direction, then per run value [, delta, verdict].

    Family names appear as section rows (a single non-empty first cell).
    """
    hib = {}
    for run in reversed(runs):  # the first run's declaration wins
        hib.update(run.analysis.higher_is_better)
    rows = []
    for family, metrics in _families(runs):
        rows.append([family] + [""] * (1 + 1 + 3 * (len(runs) - 1)))
        for metric in metrics:
            direction = {True: "higher", False: "lower"}.get(hib.get(metric), "?")
            ref = runs[0].summary.get(metric, math.nan)
            row = [metric, direction, format_value(ref) if metric in runs[0].summary else "-"]
            for run in runs[1:]:
                v = run.summary.get(metric)
                if v is None:
                    row += ["-", "", ""]
                    continue
                delta = v - ref
                row += [format_value(v), format_delta(delta), _verdict_word(delta, hib.get(metric))]
            rows.append(row)
    return rows


def _study_table(pages: _Pages, runs: Sequence[Run], shown: Sequence[Run]) -> None:
    header, rows = study.condition_rows(runs)
    n = len(header) - 2
    widths = [0.17, 0.06] + [min(0.19, 0.77 / n)] * n
    seeds = "; ".join(f"{study.CONDITION_NAMES.get(c, c)}: seeds {', '.join(str(r.seed) for r in rs)}"
                      for c, rs in study.by_condition(runs).items())
    intro = (f"Created {now()}. Each cell: the condition's mean over its runs ± the half-width of the 95 % "
             f"t-interval over seeds (one run: its own bootstrap CI, or the value alone). {seeds}. The per-run "
             f"pages below show {', '.join(r.name for r in shown)}; every run's config is in the appendix.")
    for start in range(0, len(rows), TABLE_ROWS):
        title = "Study" + (" (continued)" if start else f": {len(runs)} runs, mean ± 95 % CI over seeds per condition")
        with pages.page(title, layout=None) as fig:
            if not start:
                fig.text(0.01, 0.925, _plain("\n".join(textwrap.wrap(intro, 190))), fontsize=8, va="top",
                         color="dimgray")
            ax = fig.add_axes([0.01, 0.04, 0.98, 0.85])
            ax.axis("off")
            _table(ax, header, rows[start:start + TABLE_ROWS], widths=widths)


def _verdict_word(delta: float, higher_is_better: bool | None) -> str:
    return verdict(delta, higher_is_better)  # the dashboard's overview colours cells by the same rule


def _verdict(pages: _Pages, runs: Sequence[Run]) -> None:
    header = ["metric", "better"] + [runs[0].name + " (ref)"]
    for run in runs[1:]:
        header += [run.name, "Δ vs ref", "verdict"]
    rows = verdict_rows(runs)
    if not rows:
        pages.note("Verdict", "The runs' analysis.json summaries hold no metrics.")
        return
    for start in range(0, len(rows), TABLE_ROWS):
        chunk = rows[start:start + TABLE_ROWS]
        title = "Verdict" + (" (continued)" if start else f": {len(runs)} run{'s' * (len(runs) > 1)}, "
                                                          f"deltas against {runs[0].name}")
        with pages.page(title, layout=None) as fig:
            if not start:
                fig.text(0.01, 0.925, _plain("\n".join(textwrap.wrap(_run_line(runs), 190))), fontsize=8,
                         va="top", color="dimgray")
            ax = fig.add_axes([0.01, 0.04, 0.98, 0.85])
            ax.axis("off")
            _table(ax, header, chunk)


FOREST_TITLE = "Verdict: the paper's claims, raw and Holm-corrected"
FIRST_PAGE_WIDTHS = [0.2, 0.16, 0.05, 0.08, 0.08, 0.1, 0.17, 0.16]


def _forest(pages: _Pages, claims: list[dict]) -> None:
    """The verdict as one picture (figures.claims_forest): a row per claim, raw and corrected CI."""
    if not claims:
        return  # needs both an action-only and a KARMA run
    with pages.page(FOREST_TITLE) as fig:
        figures.to_matplotlib(figures.claims_forest(claims), ax=fig.add_subplot())


CLAIM_WIDTHS = [0.107, 0.03, 0.05, 0.05, 0.05, 0.09, 0.085, 0.035, 0.09, 0.085, 0.11, 0.06, 0.123]  # at 7 pt


def _claims(pages: _Pages, runs: Sequence[Run], claims: list[dict], where: str = "") -> None:
    """Does the paper's direction hold here? One row per claim (``claims``: study.verdict's entries)
    with its effect, raw and Holm-corrected 95 % CI and verdict, and its detection limit."""
    rows = study.claim_rows(runs, claims)
    if not rows:
        return  # needs both an action-only and a KARMA run
    header = list(study.CLAIM_COLUMNS)
    intro = ("Each claim: action-only collapses relative to KARMA. effect > 0 is the claimed direction; "
             "'holds' only when the whole 95 % CI is above 0. Detectable: the smallest paired difference the "
             "seed spread could detect, t(0.975, n-1)·s/√n, in brackets at 80 % power (t(0.975, n-1) + "
             "t(0.8, n-1))·s/√n; Holm: the same at the claim's corrected level. " + study.METHOD)
    _table_page(pages, "Claims: action-only vs KARMA" + (f" ({where})" if where else "")
                + ", effect, raw and Holm-corrected 95 % CI", intro, header, rows,
                widths=CLAIM_WIDTHS, left_columns=(0, 1, 6, 9, 10, 11, 12), fontsize=7)


def _table_page(pages: _Pages, title: str, intro: str, header: list[str], rows: list[list[str]],
                widths: list[float], left_columns: Sequence[int], fontsize: float = 8) -> None:
    """One page: a grey introduction, then the first :data:`TABLE_ROWS` rows of a table."""
    lines = textwrap.wrap(intro, 190)
    with pages.page(title, layout=None) as fig:
        fig.text(0.01, 0.925, _plain("\n".join(lines)), fontsize=8, va="top", color="dimgray")
        top = min(0.86, 0.925 - 0.0175 * len(lines) - 0.01)  # below the introduction, however long
        ax = fig.add_axes([0.01, 0.04, 0.98, top - 0.04])
        ax.axis("off")
        _table(ax, header, rows[:TABLE_ROWS], widths=widths, left_columns=left_columns, fontsize=fontsize)


def _ablations(pages: _Pages, runs: Sequence[Run]) -> None:
    """Which regularizer does what: the claims against gen only, rec only and KARMA side by side."""
    header, rows = study.ablation_rows(runs)
    if not rows:
        return  # needs action-only and a one-regularizer run
    intro = ("Per condition: its mean, the claim's effect against action-only with its 95 % CI, signed "
             "as on the claims page (> 0: the regularized run sits where the paper says KARMA does), the raw "
             "verdict and the Holm-corrected one (each comparison its own family). Gen only "
             "trains the action loss plus history-conditioned generation, rec only plus embedding-conditioned "
             "reconstruction, KARMA both. If one regularizer alone matches KARMA's column, it explains KARMA's "
             "effect. Same CIs as the claims page.")
    verdicts = [c for c in range(len(header)) if header[c].endswith("verdict")]
    if all(row[c].endswith(study.ONE_SEED) or row[c] == "–" for row in rows for c in verdicts):
        rows = [[x.removesuffix(study.ONE_SEED) if c in verdicts else x for c, x in enumerate(row)] for row in rows]
        intro += " Every verdict is from one seed."  # said once here, so that fifteen columns fit the page
    _table_page(pages, "Each regularizer alone: action-only vs gen only, rec only and KARMA", intro, header, rows,
                widths=[0.09, 0.028, 0.038] + [0.04, 0.13, 0.055, 0.055] * ((len(header) - 3) // 4),
                left_columns=(0, 1, *verdicts), fontsize=6.5)


def _fill(text: str) -> str:
    return verdict_colour(text) or "white"


def _table(ax, header: list[str], rows: list[list[str]], widths: list[float] | None = None,
           left_columns: Sequence[int] = (0, 1), fontsize: float = 8) -> None:
    """Draw the table cell by cell: names left-aligned, numbers right-aligned, verdicts coloured.

    The header row is two lines tall so long run names wrap inside their column.
    """
    from matplotlib.patches import Rectangle

    widths = widths or [0.17, 0.06, 0.11] + [0.11, 0.08, 0.07] * ((len(header) - 3) // 3)
    scale = min(1.0, 1.0 / sum(widths))
    widths = [w * scale for w in widths]
    lefts = [sum(widths[:i]) for i in range(len(widths))]
    height = 1.0 / (TABLE_ROWS + 2)
    page_width_pt = PAGE[0] * 0.98 * 72
    for i, row in enumerate([header, *rows]):
        h = 2 * height if i == 0 else height
        y = 1.0 - 2 * height - max(i, 0) * height
        family_row = i > 0 and all(x == "" for x in row[1:])
        for c, (text, left, w) in enumerate(zip(row, lefts, widths)):
            fill = GREY if i == 0 else "#f6f6f6" if family_row else _fill(text)
            ax.add_patch(Rectangle((left, y), w, h, facecolor=fill, edgecolor="#d0d0d0", linewidth=0.5))
            if i == 0:  # ~5.2 pt per character at 8 pt bold
                text = "\n".join(textwrap.wrap(text, max(4, int(w * page_width_pt / (5.2 * fontsize / 8))),
                                               max_lines=2, placeholder="…", break_on_hyphens=False))
            left_aligned = c in left_columns or family_row
            ax.text(left + 0.005 if left_aligned else left + w - 0.005, y + h / 2, _plain(text),
                    ha="left" if left_aligned else "right", va="center", fontsize=fontsize, linespacing=1.1,
                    fontweight="bold" if i == 0 or family_row else "normal")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


UNTRUSTED = "STALE or BROKEN runs: their numbers do not derive from what they hold"


def _untrusted(pages: _Pages, runs: Sequence[Run]) -> None:
    """A first page naming each run whose analysis is STALE or BROKEN (rundir.chain), and why."""
    bad = [r for r in runs if not r.chain.trusted]
    if bad:
        pages.note(UNTRUSTED, "\n\n".join(textwrap.fill(f"{r.name}: {r.chain}", 110) for r in bad))


def _run_line(runs: Sequence[Run]) -> str:
    parts = []
    for r in runs:
        step = r.analysis.run.get("step")
        parts.append(f"{r.name}: condition {r.condition}" + (f", step {step}" if step is not None else ""))
    return (f"Created {now()}.  " + ";  ".join(parts) + ".  'better' / 'worse' follow each metric's declared "
            "direction; run directories and configs are in the appendix.")


# --------------------------------------------------------------------------- sections

def _families(runs: Sequence[Run]) -> list[tuple[str, list[str]]]:
    """The runs' summary metrics by family, in the catalogue's display order (analyzers/catalogue.py)."""
    return by_family(m for r in runs for m in r.summary)


def _family_metrics(runs: Sequence[Run], family: str) -> list[str]:
    return dict(_families(runs)).get(family, [])


def _family_overview(pages: _Pages, runs: Sequence[Run], family: str) -> None:
    metrics = _family_metrics(runs, family)
    if not metrics:
        pages.note(f"{family}", f"No {family.lower()} metrics in these runs' analysis.json.")
        return
    bars = figures.condition_bars if study.is_study(runs) else figures.metric_bars
    pages.grid(f"{family}: headline metrics" + (" by condition" if study.is_study(runs) else ""), [bars(runs, m) for m in metrics])


def _by_layer(pages: _Pages, runs: Sequence[Run], family: str) -> None:
    specs = [figures.metric_by_layer(runs, m) for m in _family_metrics(runs, family)]
    specs = [s for s in specs if not s.empty]
    if specs:
        pages.grid(f"{family}: by layer", specs, cols=2 if len(specs) <= 4 else 3)


def _attention(pages: _Pages, runs: Sequence[Run], shown: Sequence[Run], probes: int, layer: int | None,
               head: int | None) -> None:
    _family_overview(pages, runs, "Attention")
    _by_layer(pages, shown, "Attention")
    for metric in _family_metrics(shown, "Attention"):
        maps = figures.head_heatmaps(shown, metric)
        if any(not s.empty for s in maps):
            pages.grid(f"Attention: {metric} by layer and head (one colour scale)", maps, **_per_run_grid(len(shown)))
    if layer is None or head is None:
        strongest = figures.strongest_sink(shown[0]) or (0, 0)
        layer = strongest[0] if layer is None else layer
        head = strongest[1] if head is None else head
    for run in shown:
        title = f"Attention maps: {run.name}, layer {layer}, head {head}"
        try:
            chosen = load_maps(run)[:probes]
            specs = [figures.attention_map(p, layer, head, map_labels(run, p), run.name) for p in chosen]
        except BadInput as e:
            pages.note(title, f"Not available: {e}")
            continue
        pages.grid(title, specs, cols=len(specs), rows=1)


def _geometry(pages: _Pages, runs: Sequence[Run], shown: Sequence[Run]) -> None:
    _family_overview(pages, runs, "Geometry")
    _by_layer(pages, shown, "Geometry")
    hidden, missing = {}, []
    for run in shown:
        try:
            hidden[run.name] = load_hidden(run)
        except BadInput as e:
            missing.append(str(e))
    if not hidden:
        pages.note("Geometry: embedding spectra", "Not available: " + "; ".join(missing))
        return
    try:  # e.g. a capture of a single probe has no spread to measure
        specs, scatters = _geometry_specs(hidden, figures.run_looks(shown))
    except BadInput as e:
        pages.note("Geometry: embedding spectra", f"Not available: {e}")
        return
    pages.grid("Geometry: spectra and cosine similarity" + (f" (missing: {len(missing)} run(s))" if missing else ""),
               specs, cols=2)
    pages.grid("Geometry: interest and item embeddings, first two principal components", scatters,
               **_per_run_grid(len(scatters)))


def _geometry_specs(hidden: dict, looks: dict) -> tuple[list[FigureSpec], list[FigureSpec]]:
    interest = {n: h.interest for n, h in hidden.items()}
    items = {n: h.items for n, h in hidden.items()}
    specs = [figures.singular_spectrum(interest, "interest embeddings: spectrum", looks),
             figures.singular_spectrum(items, "item embeddings: spectrum", looks),
             figures.cosine_histogram(interest, title="interest embeddings: pairwise cosine", looks=looks),
             figures.cosine_histogram(items, title="item embeddings: pairwise cosine", looks=looks)]
    scatters = [figures.pca_scatter(np.concatenate([h.items, h.interest]),
                                    ["item"] * len(h.items) + ["interest"] * len(h.interest), title=f"{name}: PCA")
                for name, h in hidden.items()]
    return specs, scatters


def _decodability(pages: _Pages, runs: Sequence[Run], shown: Sequence[Run], samples: int) -> None:
    _family_overview(pages, runs, "Decodability")
    lines = []
    for run in shown:
        decoded = run.analysis.samples.get("decoded") or []
        lines.append(f"== {run.name} ({run.condition}): {len(decoded)} decoded samples, first {min(samples, len(decoded))}")
        for i, s in enumerate(decoded[:samples]):
            truth, got = str(s.get("truth", "")), str(s.get("decoded", ""))
            mark = "exact" if exact(truth, got) else "differs"  # recon_exact's rule
            lines += [f"[{i}] history: {s.get('history', '')}", f"    truth:   {truth}", f"    decoded: {got}   ({mark})", ""]
        lines.append("")
    if not any(r.analysis.samples.get("decoded") for r in shown):
        pages.note("Decodability: samples", "Not available: no samples.decoded in these runs' analysis.json.")
        return
    pages.text("Decodability: the interest embedding decoded back to text", lines)


def _retrieval(pages: _Pages, runs: Sequence[Run], shown: Sequence[Run]) -> None:
    bars = figures.condition_bars if study.is_study(runs) else figures.metric_bars
    specs = [figures.hr_at_k(shown)] + [bars(runs, m) for m in _family_metrics(runs, "Retrieval")]
    if all(s.empty for s in specs):
        pages.note("Retrieval", "Not available: no metrics.json and no hr@K in the analysis summaries.")
        return
    pages.grid("Retrieval: full-catalogue ranking (test split)", specs)
    _retrieval_nulls(pages, runs)


NULL_WIDTHS = [0.08, 0.15, 0.045, 0.055, 0.055, 0.065, 0.12, 0.11, 0.11, 0.19]  # at 7 pt


def _retrieval_nulls(pages: _Pages, runs: Sequence[Run]) -> None:
    rows = study.null_rows(runs)
    if not rows:
        return  # no metrics.json baselines (older runs)
    intro = ("Test split: the user's history is excluded from the ranking; the popularity and first-order "
             "Markov rankers are scored on the same users, the random ranker by its expected value. The "
             "SASRec figure is a reference measured elsewhere on the same leave-one-out split with nothing "
             "excluded (test_all): it has no CI of its own. 'better' / 'worse' only when the 95 % CI of "
             "run - null excludes 0 (how each CI is obtained: the claims page). Holm: corrected over the "
             "retrieval metrics of one condition against one null.")
    _table_page(pages, "Retrieval against its nulls: random, popularity, Markov, SASRec", intro,
                list(study.NULL_COLUMNS), rows, widths=NULL_WIDTHS, left_columns=(0, 1, 2, 7, 8, 9), fontsize=7)


def _training(pages: _Pages, runs: Sequence[Run], shown: Sequence[Run]) -> None:
    from karma_probe.report.results import direction

    specs = [figures.loss_curves([r]) for r in shown if r.train_log]
    grads = figures.gradient_ratios([r for r in shown if r.train_log])
    specs += [grads] if not grads.empty else []
    if study.is_study([r for r in runs if r.analysis.trajectory]):  # several seeds: one line per condition, mean ± CI
        traj = study.trajectory(runs)
        base, base_name = study.trajectory_reference(runs)
        specs += [s for s in (figures.condition_trajectory(traj, m, base.summary.get(m) if base else None,
                                                           direction(runs, m), base_name)
                              for m in study.TRAJECTORY_METRICS)
                  if not s.empty]
    else:
        specs += [s for s in (figures.metric_trajectory(runs, m) for m in ("sink_mass", "hr@10")) if not s.empty]
    if not specs:
        pages.note("Training", "Not available: no train_log.jsonl and no analysis trajectory "
                               "(run `karma-probe analyze RUN --all-checkpoints` for the latter).")
        return
    pages.grid("Training: losses and metrics over steps", specs)


def _appendix(pages: _Pages, runs: Sequence[Run]) -> None:
    for run in runs:
        lines = [f"run directory: {run.path}", f"condition: {run.condition}", "",
                 "provenance (analysis.json 'run'):", *_json(run.analysis.run).splitlines(), "",
                 "config.json:", *(_json(run.config).splitlines() if run.config else ["(not found)"])]
        pages.text(f"Appendix: {run.name} — config and provenance", lines)


# --------------------------------------------------------------------------- helpers

def _per_run_grid(n: int) -> dict:
    """One panel per run: a row of up to three, or 2 x 2 for four, then pages of 2 x 3."""
    return {"cols": 2, "rows": 2} if n == 4 else {"cols": min(3, n), "rows": 1 if n <= 3 else 2}


def _unique_names(runs: Sequence[Run]) -> list[Run]:
    """Runs from different roots may share a directory name: label those by parent/name."""
    names = [r.name for r in runs]
    return [replace(r, name=f"{r.path.parent.name}/{r.name}") if names.count(r.name) > 1 else r for r in runs]


def _json(obj) -> str:
    return json.dumps(obj, indent=2, default=str)


_CONTROL = {c: f"\\x{c:02x}" for c in range(32) if chr(c) not in "\n\t"}


def _plain(s: str) -> str:
    # "$" would switch matplotlib into mathtext (a title like "$5 movie" fails to render); a control
    # character (a decoded "\x00" of an untrained model) has no glyph: shown as its escape instead
    return str(s).replace("$", r"\$").translate(_CONTROL)
