"""What the project knows about each metric, in one place: its family, direction, whether it is a
headline of the study and a claim of the paper, its range, and how a value is printed.

The registry (:mod:`karma_probe.analyzers.registry`) refuses to register a name that is not
here and checks that an analyzer declares the direction and lives in the family written here;
the study table (pipeline, study), the PDF report, the dashboard, ``karma-probe ls``, the CI gate
(``check``: ranges) and the test fakes read these facts instead of keeping lists of their own.
So adding a metric is one :class:`Facts` line here plus its analyzer.

Order matters: it is the order ``analyze`` runs the metrics (cheap capture-only metrics first,
then the model's), the order of the study table and of the claims. Standard library only
(no numpy, no torch), so ``check`` and ``results`` stay light.

Also here: the one rule for "exact" (:func:`exact`: the decoded title equals the true one after
:func:`normalize_title`), used by ``recon_exact``, the PDF's "exact" mark and the dashboard's
green cell, and the one way to print a value (:func:`format_value`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

FAMILIES = ("attention", "geometry", "decodability", "knowledge", "retrieval")  # the analyzer modules, in report order
NULLS = ("gain", "shuffled")  # the decodability metrics' null (issue 13): M_shuffled and M_gain = M - M_shuffled
UNIT = (0.0, 1.0)


@dataclass(frozen=True)
class Facts:
    """One metric. ``family`` is the analyzer module that defines it (its title is the report's section)."""

    name: str
    family: str
    higher_is_better: bool
    headline: bool = False  # a row of the study table (summary.json ``table``, the README)
    claim: str | None = None  # the paper: action-only is "higher" / "lower" than KARMA on it; None: no claim
    bounds: tuple[float, float] | None = None  # the range where the CI gate flags a baseline stuck on a bound
    listed: bool = False  # a column of ``karma-probe ls``
    base: str | None = None  # the metric it derives from (a null, or probe_decode_acc_own's fixed-reader twin)
    null: str | None = None  # "gain" / "shuffled" for a null of ``base``

    @property
    def title(self) -> str:
        """The family as the report and the dashboard name it: "Attention", ..."""
        return self.family.capitalize()


def _f(name, family, higher_is_better, **kw) -> Facts:
    return Facts(name, family, higher_is_better, **kw)


def _nulls(metric: str, headline: bool, claim: str | None) -> tuple[Facts, ...]:
    """``metric_shuffled`` (same scale and direction, a reference level) and ``metric_gain`` (the
    headline and, where the paper has one, the claim: the raw value is not one, see karma_probe.report.study)."""
    return (_f(f"{metric}_shuffled", "decodability", True, base=metric, null="shuffled"),
            _f(f"{metric}_gain", "decodability", True, headline=headline, claim=claim, base=metric, null="gain"))


CATALOGUE: tuple[Facts, ...] = (
    _f("sink_mass", "attention", False, headline=True, claim="higher", bounds=UNIT, listed=True),
    _f("sink_rate", "attention", False, headline=True, claim="higher", bounds=UNIT),
    _f("key_concentration", "attention", False, headline=True, claim="higher", bounds=UNIT, listed=True),
    _f("attn_entropy", "attention", True, headline=True),
    # the same statistics where training acted (trained layers) and on identical inputs (passages)
    _f("sink_mass_trained", "attention", False, headline=True, bounds=UNIT),
    _f("sink_mass_text", "attention", False, headline=True, bounds=UNIT),
    _f("key_concentration_trained", "attention", False, headline=True, bounds=UNIT),
    _f("attn_entropy_trained", "attention", True, headline=True, bounds=UNIT),
    _f("key_concentration_text", "attention", False, headline=True, bounds=UNIT),
    _f("attn_entropy_text", "attention", True, headline=True, bounds=UNIT),
    _f("massive_act", "attention", False, headline=True),
    _f("sink_rate_gu", "attention", False, bounds=UNIT),  # Gu et al.'s own Sink_1^0.3, for published values
    _f("aniso_cos", "geometry", False, headline=True, claim="higher"),
    _f("erank", "geometry", True, headline=True, claim="lower"),
    _f("top1_var", "geometry", False, headline=True, bounds=UNIT),
    _f("isotropy", "geometry", True, headline=True, bounds=UNIT),
    _f("uniformity", "geometry", False, headline=True, claim="higher"),
    # raw recon_* are no claims: action-only and gen never train the reconstruction path (study.py)
    _f("recon_token_acc", "decodability", True, headline=True, bounds=UNIT),
    _f("recon_exact", "decodability", True, headline=True, bounds=UNIT),
    _f("probe_genre_f1", "decodability", True, headline=True, bounds=UNIT),
    _f("probe_decode_acc", "decodability", True, headline=True, bounds=UNIT, listed=True),
    _f("probe_decode_acc_own", "decodability", True, base="probe_decode_acc"),
    *_nulls("recon_token_acc", True, "lower"),
    *_nulls("recon_exact", True, "lower"),
    *_nulls("probe_genre_f1", True, "lower"),
    *_nulls("probe_decode_acc", True, "lower"),
    *_nulls("probe_decode_acc_own", False, None),
    _f("lm_ppl", "knowledge", False, headline=True, claim="higher"),
    _f("fact_acc", "knowledge", True, headline=True, claim="lower", bounds=UNIT, listed=True),
    # copied from RUN/metrics.json (test split); metrics.json holds more (ndcg@50) that no analyzer copies
    _f("hr@10", "retrieval", True, headline=True, claim="lower", bounds=UNIT, listed=True),
    _f("hr@50", "retrieval", True, headline=True, claim="lower", bounds=UNIT),
    _f("hr@200", "retrieval", True, headline=True, claim="lower", bounds=UNIT),
    _f("ndcg@10", "retrieval", True, headline=True, claim="lower", bounds=UNIT),
    _f("mrr", "retrieval", True, headline=True, claim="lower", bounds=UNIT),
)
FACTS: dict[str, Facts] = {f.name: f for f in CATALOGUE}
METRIC_NAMES = tuple(FACTS)


def names(*, family: str | None = None, headline: bool | None = None, claim: bool | None = None,
          listed: bool | None = None) -> tuple[str, ...]:
    """Metric names in catalogue order, filtered by the facts given (None: any)."""
    return tuple(f.name for f in CATALOGUE
                 if (family is None or f.family == family) and (headline is None or f.headline == headline)
                 and (claim is None or (f.claim is not None) == claim) and (listed is None or f.listed == listed))


HEADLINE = names(headline=True)
CLAIMS = tuple((f.name, f.claim) for f in CATALOGUE if f.claim)  # (metric, action-only is <higher|lower> than KARMA)
RETRIEVAL = names(family="retrieval")


def direction(metric: str) -> bool | None:
    f = FACTS.get(metric)
    return f.higher_is_better if f else None


def bounds(metric: str) -> tuple[float, float] | None:
    f = FACTS.get(metric)
    return f.bounds if f else None


def family_of(metric: str) -> str:
    """The report section of ``metric``: its family's title, "Other" for a name not catalogued."""
    f = FACTS.get(metric)
    return f.title if f else "Other"


def display_order(metrics) -> list[str]:
    """``metrics`` grouped by family (report order), within a family in catalogue order except that
    each metric's null follows it gain first: M_gain, M, M_shuffled. Uncatalogued names go last, sorted."""
    def key(m: str):
        f = FACTS[m]
        root = f.base if f.null else m
        return (FAMILIES.index(f.family), METRIC_NAMES.index(root), {"gain": 0, None: 1, "shuffled": 2}[f.null])

    names = list(dict.fromkeys(metrics))  # once: ``metrics`` may be a generator
    known = sorted((m for m in names if m in FACTS), key=key)
    return known + sorted(m for m in names if m not in FACTS)


def by_family(metrics) -> list[tuple[str, list[str]]]:
    """``[(title, metrics)]`` in :func:`display_order`, non-empty families only ("Other" last)."""
    out: dict[str, list[str]] = {}
    for m in display_order(metrics):
        out.setdefault(family_of(m), []).append(m)
    return list(out.items())


# --------------------------------------------------------------------------- "exact"

_YEAR = re.compile(r"\(([^()\s]+)\)\s*$")


def normalize_title(text: str, year: str = "") -> str:
    """Compare titles, not formatting: drop " | genres" and a trailing "(1995)" (or "(year)" for
    the item's own ``year``, which MovieLens sometimes spells "unkonwn"), casefold, punctuation →
    spaces, collapse whitespace. "Toy Story (1995) | Animation" → "toy story"."""
    text = text.split("|", 1)[0].strip()
    if year and text.endswith(f"({year})"):
        text = text[: -len(year) - 2]
    text = re.sub(r"\(\s*\d{4}\s*\)\s*$", "", text)
    text = re.sub(r"[^\w\s]", " ", text.casefold())
    return " ".join(text.split())


def exact(truth: str, decoded: str, year: str | None = None) -> bool:
    """The one rule for a decoded text that names the true item: equal titles after
    :func:`normalize_title` (genres, a trailing year, case and punctuation do not count).

    ``year``: the item's year as the dataset spells it (``recon_exact`` knows it); None reads it
    from ``truth``'s trailing "(...)" before the genres, as in a sample's "Heat (1995) | Action"."""
    if year is None:
        m = _YEAR.search(str(truth).split("|", 1)[0].strip())
        year = m.group(1) if m else ""
    return normalize_title(str(decoded), year) == normalize_title(str(truth), year)


# --------------------------------------------------------------------------- numbers as shown

def format_value(v: float | None) -> str:
    """One way to print a metric value, so the report, ``check``, ``ls`` and the dashboard read alike."""
    if v is None or not math.isfinite(v):
        return "n/a" if v is None else str(v)
    return f"{v + 0.0:.4g}"  # + 0.0: a negative zero (e.g. a sign-flipped 0 effect) prints as 0


def format_delta(d: float) -> str:
    """A change, signed; below 1e-12 in size it is the float noise of equal values (a mean of x - x
    over seeds), printed as +0."""
    if not math.isfinite(d):
        return str(d)
    return f"{(d if abs(d) >= 1e-12 else 0.0):+.3g}"
