"""Calibrate a model end to end: plant each collapse at every dose, capture, analyze, report.

    load the model (a run's checkpoint, or an untouched backbone as ``capture --model`` builds it)
      → plain capture (+ the model's largest residual activation, the massive family's natural scale)
      → per family, per dose α: the intervention (hooks / embedding transform / weight noise)
        → the capture library's in-memory capture (sinks, massive, barcodes) or the plain one (the others)
        → the family's registered analyzers, exactly as ``analyze`` runs them
      → responses (slope, interval, monotone)  → OUT/calibration.json + OUT/calibration_<family>.png

Every dose is measured on the same seeded probes. The analyzers are ``karma-probe analyze``'s,
unchanged: an intervention changes only the model or the embeddings the analyzers read. OUT is
written atomically at the end (a failed calibration leaves nothing).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from karma_probe.analyzers.catalogue import FACTS
from karma_probe.calibration import interventions as I
from karma_probe.core.errors import BadInput
from karma_probe.report.dose_response import SCHEMA, response

DOSES = (0.0, 0.25, 0.5, 1.0, 2.0)
CALIBRATION_FILE = "calibration.json"

# family → (metrics it reads, what is planted). Expected directions come from the catalogue (the
# collapse side of each metric), not from this table.
FAMILIES = {
    "sinks": (("sink_mass", "sink_rate", "sink_mass_trained", "sink_mass_text", "sink_rate_gu"),
              f"the first token's key (position {I.SINK_POSITION}, BOS where the model has one) scaled by "
              f"(1 + α·{I.KEY_GAIN:g}) in every layer (k_proj output)"),
    "massive": (("massive_act",),
                "α·M·v added to the residual stream at position 0 after an early decoder layer (scale: added_after_layer); M = the model's "
                "largest |residual activation| on the undosed probes, v = the direction of the residual vector holding it"),
    "barcodes": (("key_concentration", "key_concentration_trained"),
                 f"the key at position {I.BARCODE_POSITION} scaled by (1 + α·{I.KEY_GAIN:g}) in every layer (k_proj output)"),
    "geometry": (("aniso_cos", "erank", "uniformity", "top1_var", "isotropy"),
                 "interest and marker embeddings pulled toward their mean direction: e ← ‖e‖·normalize((1−a)ê + a·μ̂), "
                 "a = min(α, 1)"),
    "decodability": (("recon_token_acc_gain", "recon_exact_gain", "probe_genre_f1_gain", "probe_decode_acc_gain",
                      "probe_decode_acc_own_gain"),
                     "the interest embeddings of a fraction a = min(α, 1) of the probes replaced by another probe's"),
    "knowledge": (("lm_ppl", "fact_acc"),
                  "Gaussian noise of std α·std(W) added to every weight tensor W of the trained decoder layers"),
}
FAMILY_NAMES = tuple(FAMILIES)
MODEL_SIDE = ("sinks", "massive", "barcodes")  # families re-captured at every dose (the others transform a capture)


@dataclass(frozen=True)
class CalibrationOptions:
    families: tuple[str, ...] = FAMILY_NAMES
    doses: tuple[float, ...] = DOSES
    probes: int = 32  # history probes
    text_probes: int | None = None  # general passages (None: all)
    max_len: int = 256
    batch_size: int = 8
    progress: bool = True
    decodability_metrics: tuple[str, ...] | None = None  # restrict the decodability family (None: all)
    massive_layer: int | None = None  # massive: add the vector after this decoder layer (None: the first, 0)

    def check(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise BadInput(f"unknown calibration family {', '.join(unknown)}; known: {', '.join(FAMILY_NAMES)}")
        if not self.families:
            raise BadInput("no calibration family chosen")
        if len(self.doses) < 2 or any(a < 0 for a in self.doses) or list(self.doses) != sorted(set(self.doses)):
            raise BadInput(f"--doses must be at least two distinct non-negative values in ascending order, got {list(self.doses)}")
        if self.doses[0] != 0:
            raise BadInput("--doses must start at 0 (the undosed model every response is read against)")
        if self.probes < 2:
            raise BadInput(f"--probes must be >= 2 (the geometry and bootstrap need pairs), got {self.probes}")


@dataclass
class Subject:
    """The model being calibrated and what the analyzers need to know about it."""

    kmodel: object
    tokenizer: object
    cfg: object
    dataset: object
    meta: dict  # its run's config.json (or the reference run's, for --model)
    source: dict  # calibration.json "source"
    max_items: int
    run_dir: Path | None = None
    extras: dict = field(default_factory=dict)


def load_subject(run: str | Path | None = None, model: str | None = None, dataset: str = "ml-100k") -> Subject:
    """A run's model (``run``) or an untouched backbone (``model``), the latter built exactly as
    ``capture --model`` builds its reference run (capture/run.py ``base_run_model``)."""
    from karma_probe.data.dataset import load_dataset

    if (run is None) == (model is None):
        raise BadInput("give a RUN directory or --model M (not both)")
    if run is not None:
        from karma_probe.model.retriever import load_run_model
        from karma_probe.rundir import read_config

        run = Path(run)
        if not run.is_dir():
            raise BadInput(f"{run}: run directory not found")
        meta = read_config(run, required=True)
        kmodel, tok, cfg = load_run_model(run)
        data = load_dataset(cfg.dataset)
        max_items = int((meta.get("train") or {}).get("max_history", cfg.max_history))
        source = {"run": str(run), "model": cfg.model, "condition": meta.get("condition"), "seed": meta.get("seed"),
                  "train_layers": cfg.train_layers}
        return Subject(kmodel.eval(), tok, cfg, data, meta, source, max_items, run_dir=run)
    from karma_probe.capture.run import base_run_model
    from karma_probe.core.config import reference_config
    from karma_probe.core.config import TrainConfig

    data = load_dataset(dataset)
    ref = reference_config(model)
    max_items = ref.max_history if ref else 6
    kmodel, train = base_run_model(model, data, dataset, max_items=max_items, cfg=ref)
    meta = {"name": "base", "condition": "base", "seed": 0, "train": train}
    cfg = TrainConfig.from_dict(train)
    source = {"run": None, "model": model, "condition": "base", "seed": 0, "train_layers": 0}
    return Subject(kmodel.eval(), kmodel.tokenizer, cfg, data, meta, source, max_items)


# --------------------------------------------------------------------------- measuring one dose


def capture(subject: Subject, opts: CalibrationOptions):
    """The capture library's in-memory capture of the subject on the calibration's probes."""
    from karma_probe.capture.run import CaptureOptions, capture_model

    copts = CaptureOptions(probes=opts.probes, text_probes=opts.text_probes, max_len=opts.max_len, full_maps=0,
                           batch_size=opts.batch_size, progress=False)
    cap = capture_model(subject.kmodel, subject.tokenizer, dataset=subject.dataset, max_items=subject.max_items,
                        max_target_tokens=subject.cfg.max_target_tokens, opts=copts, run=subject.source)
    cap.path = Path("(calibration capture)")
    cap.validate()
    return cap


def with_hidden(cap, **hidden):
    """A copy of capture ``cap`` whose hidden states ``hidden`` replace its own (the rest shared)."""
    from karma_probe.rundir import Capture

    out = Capture(cap.manifest, cap.stats, cap.maps, {**cap.hidden, **hidden})
    out.path = cap.path
    return out


def inputs_for(subject: Subject, cap, shared: dict):
    """The analyzers' :class:`RunInputs` for the subject's loaded model and capture ``cap``.

    The model is the subject's (no reload); ``shared`` carries what does not depend on the dose
    (the reader, the decodability fit split), so every dose is read the same way.
    """
    from karma_probe.analyzers.inputs import RunInputs

    inputs = RunInputs(subject.run_dir or Path("(calibration)"), capture=cap, reader=shared["reader"])
    inputs.__dict__["meta"] = subject.meta  # cached properties: the subject's, not re-read from disk
    inputs.__dict__["loaded"] = (subject.kmodel, subject.tokenizer, subject.cfg)
    inputs._dataset = subject.dataset
    if "fit_split" in shared:
        inputs.__dict__["fit_split"] = shared["fit_split"]
    return inputs


def evaluate(metrics: list[str], inputs) -> dict:
    """The registered analyzers of ``metrics`` on ``inputs``, as ``analyze`` evaluates them."""
    from karma_probe.analyzers.run import _evaluate
    from karma_probe.analyzers import select

    return _evaluate(select(metrics), inputs, progress=False, label="")


@contextmanager
def planted(family: str, subject: Subject, alpha: float):
    """The model-side intervention of ``family`` at dose ``alpha`` (nothing for the input-side ones)."""
    backbone = subject.kmodel.backbone
    if family == "sinks":
        with I.planted_key(backbone, alpha, I.SINK_POSITION):
            yield
    elif family == "massive":
        with I.planted_massive(backbone, alpha, subject.extras["massive_vector"], subject.extras["massive_layer"]):
            yield
    elif family == "barcodes":
        with I.planted_key(backbone, alpha, I.BARCODE_POSITION):
            yield
    elif family == "knowledge":
        with I.weight_noise(backbone, alpha, subject.extras["noise_layers"]):
            yield
    else:
        yield


def dosed_capture(family: str, subject: Subject, plain, alpha: float, opts: CalibrationOptions):
    """The capture the family's analyzers read at dose ``alpha`` (inside :func:`planted`)."""
    if family in MODEL_SIDE:
        return capture(subject, opts)
    if family == "geometry":
        h = plain.hidden
        return with_hidden(plain, interest=I.pull_to_mean(h["interest"], alpha),
                           marker_hidden=np.stack([I.pull_to_mean(h["marker_hidden"][:, m], alpha)
                                                   for m in range(h["marker_hidden"].shape[1])], 1)
                           if I.effective(alpha) else h["marker_hidden"])
    if family == "decodability":
        return with_hidden(plain, interest=I.swap_embeddings(plain.hidden["interest"], alpha))
    return plain  # knowledge: the model changes, the probes do not


# --------------------------------------------------------------------------- the whole calibration


def family_metrics(family: str, opts: CalibrationOptions) -> list[str]:
    metrics = list(FAMILIES[family][0])
    if family == "decodability" and opts.decodability_metrics is not None:
        metrics = [m for m in metrics if m in opts.decodability_metrics]
    return metrics


def calibrate(subject: Subject, opts: CalibrationOptions = CalibrationOptions()) -> dict:
    """Measure every chosen family at every dose; returns calibration.json's content."""
    from karma_probe.analyzers.reader import FixedReader
    from karma_probe.rundir import git_sha, now, versions

    opts.check()
    t0 = time.perf_counter()
    backbone = subject.kmodel.backbone
    recorder = I.PeakRecorder(backbone)
    with recorder.recording():
        plain = capture(subject, opts)
    peak = recorder.peak
    L = backbone.config.num_hidden_layers
    subject.extras.update(massive_vector=I.massive_vector(peak), massive_layer=I.massive_layer(L, opts.massive_layer),
                          noise_layers=I.trained_layers(L, subject.cfg.train_layers, subject.meta.get("condition")))
    shared = {"reader": FixedReader()}
    plain_inputs = inputs_for(subject, plain, shared)
    if "decodability" in opts.families and any(m.startswith("probe_") for m in family_metrics("decodability", opts)):
        shared["fit_split"] = plain_inputs.fit_split  # the readers' fit: the undosed model's, the same at every dose
    # the undosed values: a plain capture + analyze (model-side families: its own pass, no hooks)
    undosed = evaluate([m for f in opts.families if f in MODEL_SIDE for m in family_metrics(f, opts)],
                       plain_inputs) if set(MODEL_SIDE) & set(opts.families) else _empty()
    scale = {"sinks": {"position": I.SINK_POSITION, "gain": I.KEY_GAIN},
             "massive": {"peak_abs": peak.value, "peak_after_layer": peak.layer, "peak_dim": peak.dim,
                         "added_after_layer": subject.extras["massive_layer"], "vector_norm_at_1": peak.value},
             "barcodes": {"position": I.BARCODE_POSITION, "gain": I.KEY_GAIN},
             "geometry": {"clip": 1.0}, "decodability": {"clip": 1.0, "seed": I.DERANGEMENT_SEED},
             "knowledge": {"layers": subject.extras["noise_layers"], "seed": I.NOISE_SEED}}
    families, undosed_values = {}, dict(undosed["summary"])
    for family in opts.families:
        t1 = time.perf_counter()
        metrics = family_metrics(family, opts)
        per_dose = []
        for alpha in opts.doses:
            if opts.progress:
                print(f"calibrate: {family} α = {alpha:g}", flush=True)
            with planted(family, subject, alpha):
                cap = dosed_capture(family, subject, plain, alpha, opts)
                per_dose.append(evaluate(metrics, inputs_for(subject, cap, shared)))
        measured = [m for m in metrics if all(m in r["summary"] and r["summary"][m] is not None for r in per_dose)]
        absent = {m: per_dose[0]["absent"].get(m, "not measured at every dose") for m in metrics if m not in measured}
        for m in measured:
            undosed_values.setdefault(m, per_dose[0]["summary"][m])  # input-side / knowledge: α = 0 IS the plain analysis
        effective = [I.effective(a) if family in ("geometry", "decodability") else float(a) for a in opts.doses]
        responses = {}
        for m in measured:
            reps = [r["bootstrap"].get(m) for r in per_dose]
            responses[m] = response(effective, [r["summary"][m] for r in per_dose],
                                    higher_is_better=FACTS[m].higher_is_better,
                                    intervals=[r["intervals"].get(m) for r in per_dose],
                                    replicates=reps if all(x is not None for x in reps) else None).to_json()
        families[family] = {
            "intervention": FAMILIES[family][1], "scale": scale[family], "effective_doses": effective,
            "dose0_exact": all(per_dose[0]["summary"][m] == undosed_values[m] for m in measured),
            "metrics": responses, "absent": absent, "seconds": round(time.perf_counter() - t1, 1)}
    n_text = len(plain.manifest["probes"]["text"]["texts"])
    return {"schema": SCHEMA, "source": subject.source, "doses": list(opts.doses),
            "probes": {"history": opts.probes, "text": n_text, "seed": plain.manifest["probes"]["seed"],
                       "max_len": opts.max_len, "max_items": subject.max_items},
            "undosed": {m: undosed_values[m] for m in undosed_values if any(m in f["metrics"] for f in families.values())},
            "families": families, "seconds": round(time.perf_counter() - t0, 1),
            "created": now(), "git_sha": git_sha(), "versions": versions()}


def _empty() -> dict:
    return {"summary": {}, "intervals": {}, "bootstrap": {}, "absent": {}}


def write_report(result: dict, out: str | Path) -> Path:
    """OUT/calibration.json and one figure per family, swapped in atomically."""
    from karma_probe.report.figures.calibration import family_figure
    from karma_probe.rundir import atomic_dir, write_json

    out = Path(out)
    with atomic_dir(out) as tmp:
        write_json(tmp / CALIBRATION_FILE, result)
        for family in result["families"]:
            fig = family_figure(result, family)
            fig.savefig(tmp / f"calibration_{family}.png", dpi=110, bbox_inches="tight")
    return out / CALIBRATION_FILE


def check_out(out: str | Path) -> Path:
    """Refuse an OUT that is not a calibration directory before minutes of work."""
    from karma_probe.rundir import check_writable

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CALIBRATION_FILE).is_file())):
        raise BadInput(f"{out}: exists and is not a calibration directory; choose another --out")
    check_writable(out, directory=True)
    return out
