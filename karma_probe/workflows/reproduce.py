"""The whole study in one call: train each condition and seed, capture, analyze, report.

Every stage is skipped when its output is already there (a training run resumes from its last
checkpoint), so an interrupted reproduction continues where it stopped when started again.
Each run is claimed (the writer lock of karma_probe.rundir.lock, ``RUNS_ROOT/.run-locks/``, that
train, capture and analyze take too; released when the process ends, however it ends) while its
stages run, so two reproductions of one study started
side by side share the runs out instead of training the same one twice: on a machine with idle
cores, start the same command twice with ``--threads 1`` each.
Output under ``report_dir``: ``summary.json``, ``report.pdf`` (every run, action-only first so
deltas read "vs action-only") and the key figures as PNG.

summary.json: ``table`` (per condition and metric: mean, std, n, per-seed values and the 95 % CI
``ci_low`` / ``ci_high`` / ``half_width``), ``verdict`` (per claim: effect, CI, holds),
``retrieval_vs_baselines`` (each condition minus the popularity / markov rankers, with CIs),
``retrieval_vs_reference`` (each condition's HR@10 without history exclusion minus a published
SASRec figure, with the run's CI), ``trajectory`` (metrics and claims over training checkpoints).
How each CI is obtained (seeds, users or probes) is in karma_probe.report.study. summary.md gives the
same numbers as Markdown tables (karma_probe.report.study.summary_markdown).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from karma_probe.analyzers import catalogue
from karma_probe.core.errors import BadInput
from karma_probe.rundir import RunPaths

if TYPE_CHECKING:
    from karma_probe.report.figures import FigureSpec

MAIN_CONDITIONS = ("action", "karma")
ALL_CONDITIONS = ("action", "gen", "rec", "karma")
HEADLINE = catalogue.HEADLINE  # the study table's rows (analyzers/catalogue.py)
BASE_MODEL = {"tiny": "tiny", "smollm2": "smollm2-135m", "smollm2-full": "smollm2-135m"}
# The study's two references, by run-name suffix: the trained runs' model at step 0 (the untouched
# backbone reading freshly initialized item tokens, through untrained heads: the same inputs as
# the runs) and the untouched backbone itself (text interface, no heads: its general passages,
# facts and language are the model before any fine-tuning).
REFERENCES = {"step0": "the trained runs' model at step 0 on", "untouched": "the untouched"}


@dataclass(frozen=True)
class Plan:
    preset: str
    conditions: tuple[str, ...] = MAIN_CONDITIONS
    seeds: tuple[int, ...] = (0,)
    runs_root: Path = Path("runs")
    report_dir: Path = Path("reports/tiny")
    steps: int | None = None
    probes: int = 64
    max_len: int = 256
    base: bool = True  # analyze the two references (REFERENCES): the step-0 model and the untouched backbone
    # analyze intermediate checkpoints too (slower): of every condition (True) or of those named
    trajectory: bool | tuple[str, ...] = False
    threads: int | None = None  # torch threads for every stage (None: the idle cores, cpu.auto_threads)
    overrides: dict = field(default_factory=dict)
    calibration: Path | None = None  # calibrate's calibration.json: each claim's detection limit as a planted dose
    tag: str = ""  # in the run names of a variant (e.g. "rho0.25" for --set balance_rho=0.25): <preset>-<condition>-<tag>-s<seed>

    def follows(self, condition: str) -> bool:
        """Whether ``condition``'s runs are analyzed at every checkpoint (the trajectory)."""
        return self.trajectory is True or (isinstance(self.trajectory, tuple) and condition in self.trajectory)

    def run_name(self, condition: str, seed: int) -> str:
        return f"{self.preset}-{condition}{'-' + self.tag if self.tag else ''}-s{seed}"


def _stage(i: int, n: int, what: str) -> None:
    # the clock time, so a background log shows how long each stage took
    print(f"[{i}/{n}] {time.strftime('%Y-%m-%d %H:%M:%S')} {what}", flush=True)


def reproduce(plan: Plan, progress: bool = True) -> dict:
    from karma_probe.capture.run import CaptureOptions
    from karma_probe.core.config import make_config

    unknown = [c for c in plan.conditions if c not in ALL_CONDITIONS]
    if unknown:
        raise BadInput(f"unknown condition(s) {unknown}; known: {', '.join(ALL_CONDITIONS)}")
    opts = CaptureOptions(probes=plan.probes, max_len=plan.max_len, progress=progress)
    jobs = [(c, s) for s in plan.seeds for c in plan.conditions]
    n = len(jobs) * 3 + (4 if plan.base else 0) + 1
    i, t0 = 0, time.perf_counter()
    run_dirs: list[Path] = []
    busy: list[Path] = []  # runs another reproduction is working on
    for cond, seed in jobs:
        fields = {"seed": seed} | ({"steps": plan.steps} if plan.steps is not None else {})  # 0 is refused, not "the default"
        cfg = make_config(plan.preset, cond, dict(plan.overrides), **fields)
        out = plan.runs_root / plan.run_name(cond, seed)
        run_dirs.append(out)
        with claim(out) as mine:
            if not mine:
                i += 3
                _stage(i, n, f"skip {out}: another reproduction is working on it")
                busy.append(out)
                continue
            i = _run_stages(plan, cfg, out, i, n, opts, progress)
    for kind in REFERENCES if plan.base else ():
        base = plan.runs_root / f"{plan.preset}-{kind}"
        with claim(base) as mine:
            if mine:
                i = _base_stages(plan, base, kind, i, n, opts, progress)
            else:
                i += 2
                _stage(i, n, f"skip {base}: another reproduction is working on it")
                busy.append(base)
        run_dirs.append(base)
    i += 1
    if busy:
        run_dirs = [d for d in run_dirs if RunPaths(d).analysis.is_file()]
        print(f"{len(busy)} run(s) are being worked on by another reproduction ({', '.join(d.name for d in busy)}): "
              f"the report covers the {len(run_dirs)} analyzed so far; run the command again when they are done",
              flush=True)
        if not run_dirs:
            return {}
    _stage(i, n, f"report {plan.report_dir}")
    t = time.perf_counter()
    summary = write_outputs(plan, run_dirs)
    stages = summary.get("wall_time_s", {}).get("stages", {}) | {"report": round(time.perf_counter() - t, 1)}
    summary["wall_time_s"] = summary.get("wall_time_s", {}) | {
        "stages": stages, "total": round(sum(stages.values()), 1), "this_invocation": round(time.perf_counter() - t0, 1)}

    write_summary(plan.report_dir, summary)
    print(f"done in {summary['wall_time_s']['this_invocation']:.0f} s: {plan.report_dir / 'summary.json'}, "
          f"summary.md, {plan.report_dir / 'report.pdf'}", flush=True)
    return summary


def write_summary(report_dir: Path, summary: dict) -> None:
    """``summary.json`` and its Markdown, ``summary.md`` (study.summary_markdown), each atomically."""
    from karma_probe.report.study import summary_markdown
    from karma_probe.rundir import write_json, write_text

    write_json(report_dir / "summary.json", summary)
    write_text(report_dir / "summary.md", summary_markdown(summary))


def claim(run_dir: Path):
    """A context manager yielding True when this reproduction holds ``run_dir``'s writer lock for
    the block, False when another process (a reproduction, a train / capture / analyze command)
    holds it: :func:`karma_probe.rundir.lock.try_claim`, the one lock every writer of a run takes.
    The stages below run in-process under this claim and do not claim again."""
    from karma_probe.rundir.lock import try_claim

    return try_claim(run_dir)


def _run_stages(plan: Plan, cfg, out: Path, i: int, n: int, opts, progress: bool) -> int:
    """Train, capture and analyze one run, each only if its output is missing or stale; returns the stage count."""
    from karma_probe.analyzers.run import analyze_run
    from karma_probe.capture.run import capture_run
    from karma_probe.core.cpu import torch_threads
    from karma_probe.rundir.analysis import read_previous
    from karma_probe.train.loop import train_run

    paths = RunPaths(out)
    i += 1
    _stage(i, n, f"train {out}")
    train_run(cfg, out, preset=plan.preset, progress=progress, threads=plan.threads)  # resumes, or returns when done
    i += 1
    _stage(i, n, f"capture {out}")
    if not _fresh(paths.manifest, paths.state):
        with torch_threads(plan.threads):
            capture_run(out, opts)
    i += 1
    _stage(i, n, f"analyze {out}")
    follows = plan.follows(cfg.condition)
    # a run analyzed before this plan asked for its trajectory (a study's seed 0 reused by the next
    # step) is analyzed again, or its seed would be missing from every trajectory mean and claim
    if not _fresh(paths.analysis, paths.manifest) or (follows and not (read_previous(out) or {}).get("trajectory")):
        analyze_run(out, all_checkpoints=follows, progress=progress, threads=plan.threads)
    return i


def _base_stages(plan: Plan, base: Path, kind: str, i: int, n: int, opts, progress: bool) -> int:
    """Capture and analyze one reference run (``REFERENCES``); returns the stage count."""
    from karma_probe.analyzers.run import analyze_run
    from karma_probe.capture.run import create_base_run
    from karma_probe.core.config import make_config
    from karma_probe.core.cpu import torch_threads

    paths = RunPaths(base)
    base_cfg = make_config(plan.preset, "action", dict(plan.overrides))
    i += 1
    _stage(i, n, f"capture {base} ({REFERENCES[kind]} {BASE_MODEL[plan.preset]})")
    if not paths.manifest.is_file():
        # the same probes as the trained runs: same dataset, same number of history items
        with torch_threads(plan.threads):
            create_base_run(BASE_MODEL[plan.preset], base, opts, dataset=base_cfg.dataset,
                            max_items=base_cfg.max_history, cfg=base_cfg, untouched=kind == "untouched")
    i += 1
    _stage(i, n, f"analyze {base}")
    if not _fresh(paths.analysis, paths.manifest):
        analyze_run(base, progress=progress, threads=plan.threads)
    return i


def _fresh(output: Path, source: Path) -> bool:
    """``output`` exists and is newer than ``source`` (so a re-trained run is re-captured)."""
    return output.is_file() and (not source.is_file() or output.stat().st_mtime >= source.stat().st_mtime)


def write_outputs(plan: Plan, run_dirs: list[Path]) -> dict:
    """summary.json content, report.pdf and the key PNG figures for the runs of a plan."""
    from karma_probe.report import study
    from karma_probe.report.pdf import write_report
    from karma_probe.report.results import load_run
    from karma_probe.rundir import git_sha, now, versions

    runs = [load_run(d) for d in run_dirs]
    groups = study.by_condition(runs)
    directions: dict[str, bool] = {}
    for r in runs:
        directions |= {k: v for k, v in r.analysis.higher_is_better.items() if v is not None}
    metrics = [m for m in HEADLINE if any(m in r.summary for r in runs)]
    plan.report_dir.mkdir(parents=True, exist_ok=True)
    written = write_report(runs, plan.report_dir / "report.pdf")
    trajectory = study.trajectory(runs)
    figures = _write_figures(runs, plan.report_dir, trajectory, directions)
    return {
        "schema": "karma_probe.reproduction/2",
        "preset": plan.preset,
        # the seeds this report holds, per trained group; fewer than planned while another reproduction
        # sharing the runs still works on some (summary.md's title names the missing ones). The
        # references are left out by their runs' condition: their groups are named "step 0", "untouched"
        "seeds": sorted({r.seed for r in runs if r.condition != "base" and r.seed is not None}),
        "seeds_by_condition": {c: sorted(r.seed for r in rs if r.seed is not None)
                               for c, rs in groups.items() if rs[0].condition != "base"},
        "planned_seeds": list(plan.seeds),
        "conditions": list(groups),
        "runs": {r.name: {"condition": r.condition, "path": str(d), "config_hash": r.config.get("config_hash"),
                          # the untouched reference carries the trained runs' config, but never trained
                          "steps": 0 if r.condition == "base" else (r.config.get("train") or {}).get("steps")}
                 for r, d in zip(runs, run_dirs)},
        "higher_is_better": {m: directions.get(m) for m in metrics},
        "table": study.table(runs, metrics),
        "verdict": study.verdict(runs, plan.calibration),
        "ablations": study.ablations(runs, plan.calibration),
        "retrieval_vs_baselines": study.vs_baselines(runs),
        "retrieval_vs_reference": study.vs_reference(runs),
        "trajectory": trajectory,
        "uncertainty": study.METHOD,
        # each stage's time as its run directory recorded it, so a stage skipped on a re-run, or run by
        # another reproduction sharing the runs, keeps the time it took when it ran
        "wall_time_s": {"stages": study.stage_seconds(runs), "recorded_as": study.STAGE_SOURCES},
        "report": {"pdf": str(written.path), "pages": written.pages, "figures": figures},
        "provenance": {"git_sha": git_sha(), "versions": versions(), "created": now()},
    }


def _write_figures(runs, out_dir: Path, trajectory: dict | None = None, directions: dict | None = None) -> list[str]:
    from karma_probe.report import figures as F
    from karma_probe.report import study

    trained = [r for r in runs if r.condition != "base"]
    bars = F.condition_bars if study.is_study(runs) else F.metric_bars  # several seeds: one bar per condition
    specs = {
        "sink_mass_by_layer.png": lambda: F.sink_mass_by_layer(runs),
        "key_concentration_by_layer.png": lambda: F.metric_by_layer(runs, "key_concentration"),
        "hr_at_k.png": lambda: F.hr_at_k(trained),
        "loss_curves.png": lambda: F.loss_curves(trained),
        # the gain over the shuffled-embedding null is the headline; runs analyzed before it have the raw value
        "decodability.png": lambda: bars(runs, "probe_decode_acc_gain" if any(
            "probe_decode_acc_gain" in r.summary for r in runs) else "probe_decode_acc"),
        "fact_acc.png": lambda: bars(runs, "fact_acc"),
        # the verdict as a picture: every claim's paired effect, raw and Holm-corrected CI
        "claims_forest.png": lambda: F.claims_forest(study.verdict(runs)),
    }
    base, base_name = study.trajectory_reference(runs)
    for m in study.TRAJECTORY_METRICS if trajectory and trajectory.get("conditions") else ():
        specs[f"trajectory_{m}.png"] = (lambda m=m: F.condition_trajectory(
            trajectory, m, base.summary.get(m) if base else None, (directions or {}).get(m), base_name))
    return save_figures(specs, out_dir)


def save_figures(specs: dict[str, Callable[[], FigureSpec]], out_dir: Path) -> list[str]:
    """Draw each ``{file name: make spec}`` to ``out_dir/<file name>`` (PNG, 110 dpi); returns the
    names written. A figure whose data is missing is skipped with a line saying why, not fatal; an
    empty ``trajectory_*`` figure (a metric no checkpoint was analyzed for) is skipped silently."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from karma_probe.report import figures as F

    written = []
    for name, make in specs.items():
        try:
            spec = make()
            if spec.empty and name.startswith("trajectory_"):  # a metric no checkpoint was analyzed for
                continue
            fig = F.to_matplotlib(spec)
        except (BadInput, KeyError, ValueError) as e:  # a figure whose data is missing is skipped, not fatal
            print(f"  skipped {name}: {e}", flush=True)
            continue
        fig.savefig(out_dir / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(name)
    return written
