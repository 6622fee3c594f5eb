"""Run the registered analyzers on a run directory and write ``RUN/analysis.json`` (checkpoints.md).

    RUN/capture (numpy) ─┐
    RUN/checkpoint (torch, loaded only if a selected metric needs it) ─┼─> analyzers ─> analysis.json
    RUN/metrics.json ────┘

Everything that can be wrong with the input (no run dir, no capture, a capture of another model or
another step, an unknown metric name, no intermediate checkpoints for ``--all-checkpoints``) is
found before any analyzer runs, and ``analysis.json`` is written atomically at the very end, so a
failed analysis leaves the previous file untouched.

``derived_from`` records the fingerprints of the capture and checkpoint read (karma_probe.rundir.chain),
so every reader can tell an analysis older than its capture (STALE) from a current one.

A metric whose input this run does not have (the reconstruction path of an untouched model, a
missing ``metrics.json``) is listed under ``absent`` with the reason instead of in ``summary``.

Uncertainty: a metric whose analyzer measures it over probes (attention, geometry, decodability)
gets ``intervals[metric] = [low, high]``, the 95 % percentile bootstrap interval over the history
probes (1000 seeded resamples, analyzers/bootstrap.py; ``interval_method`` says so), and its
replicates under ``bootstrap[metric]``: the resample indices are the same for every run captured
on the same probe set, so the replicates of two runs pair up for a paired difference. The
knowledge metrics resample their own items the same way: ``fact_acc`` the facts, ``lm_ppl`` the
passages.
``embedding_space`` says in which space the interest/item embeddings were measured (a base run's
through a seeded random head of the trained runs' width, analyzers/space.py).

Torch runs on the idle cores (:func:`karma_probe.core.cpu.auto_threads`): on a shared machine, threads that wait for a
busy core cost more than they bring.

``--metrics a,b`` recomputes only those metrics; the other metrics of an existing analysis.json of
the same checkpoint step are kept, so one slow metric can be refreshed alone.

Trajectory (``--all-checkpoints``): every ``RUN/checkpoints/step-*/`` is loaded and, unless it
holds its own ``capture/``, captured in memory by the capture library on a smaller probe set
(TRAJECTORY_PROBES history and TRAJECTORY_TEXT_PROBES text probes, the same seeded draw at every
step), so every metric — attention sinks included — gets a curve over training. Compare the steps
with each other; the final ``summary`` uses the run's full capture, a larger probe set. Retrieval
enters a step if its checkpoint holds a ``metrics.json``. Cost: a SmolLM2-135M checkpoint takes
about the final analysis' model time plus its capture (benchmarks/README.md); restrict with
``--metrics`` for a quick curve.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from karma_probe.analyzers import Absent, select
from karma_probe.analyzers.bootstrap import METHOD as INTERVAL_METHOD
from karma_probe.analyzers.inputs import RunInputs
from karma_probe.core.cpu import torch_threads
from karma_probe.core.errors import BadInput
from karma_probe.rundir import (RunPaths, checkpoint_step, git_sha, intermediate_checkpoints, layout, now, read_config,
                                write_analysis)
from karma_probe.rundir.analysis import SCHEMA, read_previous, relative, run_block
from karma_probe.rundir.capture import Capture
from karma_probe.rundir.chain import DERIVED, derivation
from karma_probe.rundir.fields import finite_or_none
LOAD_MODEL = "(load model)"  # the timing entry for loading the checkpoint
CAPTURE = "(capture)"  # the timing entry for a trajectory checkpoint's in-memory capture
# The trajectory's probe set: the capture library's seeded draw, smaller than a full capture
# (64 / all) so one checkpoint costs ~1 min of capture on SmolLM2; the same for every step.
TRAJECTORY_PROBES = 32
TRAJECTORY_TEXT_PROBES = 8


def analyze_run(run_dir: str | Path, metrics: str | list[str] | None = None, all_checkpoints: bool = False,
                progress: bool = False, threads: int | None = None, device: str = "cpu", dtype: str = "float32") -> dict:
    """Analyze ``run_dir``, write ``run_dir/analysis.json`` atomically and return its content.

    ``threads``: torch intra-op threads while analyzing (restored afterwards); None picks
    :func:`karma_probe.core.cpu.auto_threads`. ``device`` / ``dtype``: where and in which precision
    the metrics that load the model run it (karma_probe.core.device).
    """
    from karma_probe.core.device import resolve

    placement = resolve(device, dtype)  # an unavailable device: bad input before anything is read
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInput(f"{run_dir}: run directory not found")
    paths = RunPaths(run_dir)
    selected = select(metrics)
    meta = read_config(run_dir, required=True)
    checkpoint = paths.checkpoint
    needs = set().union(*(m.needs for m in selected))
    if needs & {"capture", "model"} and not (checkpoint / layout.CONFIG).is_file():
        raise BadInput(f"{checkpoint}: checkpoint not found (no {layout.CONFIG})")
    capture = Capture.load(paths.capture, checkpoint) if "capture" in needs else None
    steps = intermediate_checkpoints(run_dir) if all_checkpoints else []
    if all_checkpoints and not steps:
        raise BadInput(f"{paths.checkpoints}: no intermediate checkpoints (step-*/) for --all-checkpoints "
                       "(trained with keep_checkpoints=false?)")
    # an intermediate checkpoint may hold its own capture/ (else it is captured in memory below)
    step_captures = {ck: Capture.load(ck / layout.CAPTURE, ck) for ck in steps
                     if (ck / layout.CAPTURE / layout.MANIFEST).is_file()}

    derived = derivation(checkpoint=checkpoint, capture=paths.capture)  # rundir.chain: what this reads

    # torch on the idle cores only when a metric loads the model (the capture-only ones are numpy)
    with torch_threads(threads) if "model" in needs else nullcontext() as n_threads:
        out = _analyze(run_dir, meta, checkpoint, capture, steps, step_captures, selected, progress, placement)
    out["analyzed"]["threads"] = n_threads
    out[DERIVED] = derived
    out = _merge_previous(run_dir, out, [m.name for m in selected], explicit=metrics is not None)
    write_analysis(run_dir, out)
    return out


def _analyze(run_dir, meta, checkpoint, capture, steps, step_captures, selected, progress, placement=None) -> dict:
    from karma_probe.analyzers.reader import FixedReader

    reader = FixedReader()  # the post-hoc decoder's fixed backbone: loaded once for every checkpoint
    inputs = RunInputs(run_dir, checkpoint=checkpoint, capture=capture, progress=progress, reader=reader,
                       placement=placement)
    result = _evaluate(selected, inputs, progress, label="")
    space = inputs.space.to_json() if capture is not None else None
    del inputs  # release the model before the trajectory loads the next one

    out = {
        "schema": SCHEMA,
        "run": run_block(run_dir, meta, checkpoint),
        "records": result["records"],
        "summary": result["summary"],
        "higher_is_better": {m.name: m.higher_is_better for m in selected if m.name in result["summary"]},
        "absent": result["absent"],
        "intervals": result["intervals"],
        "interval_method": INTERVAL_METHOD,
        "bootstrap": result["bootstrap"],
        "samples": {"decoded": result["samples"]},
    }
    if space is not None:
        out["embedding_space"] = space
        out["headline_set"] = capture.headline_set()  # the probe set the attention headlines are taken on
    if steps:  # non-empty exactly when --all-checkpoints (checked before anything ran)
        out["trajectory"] = []
        for ck in steps:
            ck_inputs = RunInputs(run_dir, checkpoint=ck, capture=step_captures.get(ck), metrics_path=ck / layout.METRICS,
                                  progress=progress, reader=reader, placement=placement)
            seconds, source = {}, "capture/"
            if ck_inputs.capture is None and any("capture" in m.needs for m in selected):
                t0 = time.perf_counter()
                ck_inputs.loaded  # noqa: B018  (timed on its own)
                seconds[LOAD_MODEL] = round(time.perf_counter() - t0, 2)
                t0 = time.perf_counter()
                ck_inputs.capture = _capture_checkpoint(ck_inputs, progress)
                seconds[CAPTURE] = round(time.perf_counter() - t0, 2)
                source = f"in memory: {TRAJECTORY_PROBES} history / {TRAJECTORY_TEXT_PROBES} text probes"
            r = _evaluate(selected, ck_inputs, progress, label=f"{ck.name}: ")
            out["trajectory"].append({"step": checkpoint_step(ck), "checkpoint": relative(ck, run_dir), "capture": source,
                                      "summary": r["summary"], "intervals": r["intervals"], "absent": r["absent"],
                                      "seconds": r["seconds"] | seconds})
    out["analyzed"] = {"created": now(), "git_sha": git_sha(), "seconds": result["seconds"]}
    return out


def _capture_checkpoint(inputs: RunInputs, progress: bool) -> Capture:
    """Capture a loaded intermediate checkpoint in memory, on the trajectory's smaller probe set."""
    from karma_probe.capture.run import CaptureOptions, capture_model

    model, tok, cfg = inputs.loaded
    opts = CaptureOptions(probes=TRAJECTORY_PROBES, text_probes=TRAJECTORY_TEXT_PROBES, full_maps=0, progress=progress)
    step = checkpoint_step(inputs.checkpoint)
    cap = capture_model(model, tok, dataset=inputs.dataset, max_items=cfg.max_history,
                        max_target_tokens=cfg.max_target_tokens, opts=opts,
                        run={"checkpoint": str(inputs.checkpoint), "step": step})
    cap.path = Path(f"{inputs.checkpoint} (in-memory capture)")  # what its error messages name
    cap.validate()
    return cap


def _evaluate(selected, inputs: RunInputs, progress: bool, label: str) -> dict:
    records, summary, absent, samples, seconds, intervals, reps = [], {}, {}, [], {}, {}, {}
    bar = _bar(selected, progress, label)
    for m in bar:
        if progress:
            bar.set_postfix_str(m.name)
        try:
            if "model" in m.needs and LOAD_MODEL not in seconds:
                t0 = time.perf_counter()
                inputs.loaded  # noqa: B018  (timed on its own, so each analyzer's time is its own)
                seconds[LOAD_MODEL] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            meas = m(inputs)
        except Absent as e:
            absent[m.name] = str(e)
            continue
        seconds[m.name] = round(time.perf_counter() - t0, 2)
        summary[m.name] = finite_or_none(meas.value)
        records += [r.to_json(m.higher_is_better) for r in meas.records]
        samples += list(meas.samples)
        if meas.interval is not None and all(finite_or_none(v) is not None for v in meas.interval.as_list()):
            intervals[m.name] = meas.interval.as_list()
            reps[m.name] = [finite_or_none(float(f"{v:.6g}")) for v in meas.interval.replicates]
    return {"records": records, "summary": summary, "absent": absent, "samples": samples, "seconds": seconds,
            "intervals": intervals, "bootstrap": reps}


def _bar(selected, progress: bool, label: str):
    if not progress:
        return selected
    from tqdm.auto import tqdm

    return tqdm(selected, desc=f"{label}analyze", unit="metric")


def _merge_previous(run_dir: Path, new: dict, computed: list[str], explicit: bool) -> dict:
    """With ``--metrics``, keep the other metrics of an existing analysis of the same checkpoint step."""
    if not explicit:
        return new
    old = read_previous(run_dir)  # None when absent, unreadable (replaced, not merged) or of another schema
    if old is None or (old.get("run") or {}).get("step") != new["run"]["step"]:
        return new
    if old.get(DERIVED) not in (None, new.get(DERIVED)):  # kept metrics of another capture would be stale
        return new
    done = set(computed)
    keep = lambda d: {k: v for k, v in (d or {}).items() if k not in done}  # noqa: E731
    merged = dict(new)
    if DERIVED not in old:  # the kept metrics' source was not recorded: the merge cannot vouch for them
        merged.pop(DERIVED, None)
    merged["records"] = [r for r in old.get("records", []) if r.get("metric") not in done] + new["records"]
    merged["summary"] = {**keep(old.get("summary")), **new["summary"]}
    merged["higher_is_better"] = {**keep(old.get("higher_is_better")), **new["higher_is_better"]}
    merged["absent"] = {**keep(old.get("absent")), **new["absent"]}
    merged["intervals"] = {**keep(old.get("intervals")), **new["intervals"]}
    merged["bootstrap"] = {**keep(old.get("bootstrap")), **new["bootstrap"]}
    for key in ("embedding_space", "headline_set"):
        if key not in new and key in old:
            merged[key] = old[key]
    if "analyzed" in new:  # the kept metrics' analyzer seconds stay with them (the study's wall-time table)
        merged["analyzed"] = {**new["analyzed"],
                              "seconds": {**keep((old.get("analyzed") or {}).get("seconds")), **new["analyzed"]["seconds"]}}
    # samples come from recon_exact (decoder "run") and probe_decode_acc (decoder "post-hoc")
    redone = {"run"} if "recon_exact" in done else set()
    redone |= {"post-hoc"} if "probe_decode_acc" in done else set()  # (its null and gain reuse the same fit)
    old_samples = [s for s in (old.get("samples") or {}).get("decoded", []) if s.get("decoder") not in redone]
    merged["samples"] = {"decoded": old_samples + new["samples"]["decoded"]}
    old_traj = {t.get("step"): t for t in old.get("trajectory") or [] if isinstance(t, dict)}
    if "trajectory" not in new:
        if old_traj:
            merged["trajectory"] = list(old_traj.values())
    else:
        merged["trajectory"] = [{**t, "summary": {**keep(old_traj.get(t["step"], {}).get("summary")), **t["summary"]},
                                 "intervals": {**keep(old_traj.get(t["step"], {}).get("intervals")), **t["intervals"]},
                                 "absent": {**keep(old_traj.get(t["step"], {}).get("absent")), **t["absent"]},
                                 "seconds": {**keep(old_traj.get(t["step"], {}).get("seconds")), **t["seconds"]}}
                                for t in new["trajectory"]]
    return merged
