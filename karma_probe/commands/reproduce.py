"""Reproduce the study end to end: train each condition and seed, capture, analyze, and write
REPORT_DIR/summary.json, report.pdf and key figures (REPORT_DIR: RUNS_ROOT/<preset>-report unless
--report-dir names another). Started again after an interruption, it skips finished stages and
resumes training from the last checkpoint.
"""

EXAMPLES = """examples:
  karma-probe reproduce --preset tiny                          # action + karma, tiny -> runs/tiny-report/
  karma-probe reproduce --preset tiny --conditions action gen rec karma --seeds 0 1 2
  karma-probe reproduce --preset smollm2 --report-dir reports/smollm2-ml100k --background
  # the SmolLM2 study: four conditions, three seeds, action-only and KARMA followed over training
  karma-probe reproduce --preset smollm2 --conditions action gen rec karma --seeds 0 1 2 --trajectory action karma --background
  tail -f runs/reproduce-smollm2.log                           # follow a background reproduction
  # two cores: start the same study twice, one thread each; the second takes the runs the first has not claimed
  karma-probe reproduce --preset smollm2 --threads 1 --background
  karma-probe reproduce --preset smollm2 --threads 1 --background --log runs/reproduce-smollm2-2.log
  # study v3: KARMA balanced (rho 0.25) and plain lambda 0.1 beside action-only, seed 0, full fine-tune
  karma-probe reproduce --preset smollm2-full --conditions karma --set balance_rho=0.25 --tag rho0.25 --threads 1
  accelerate launch -m karma_probe reproduce --preset smollm2  # the same on GPUs
"""


def add_arguments(p):
    p.add_argument("--preset", default="tiny", choices=["tiny", "smollm2", "smollm2-full"],
                   help="tiny (random-init), smollm2 (top 8 of 30 layers train) or smollm2-full (every decoder layer)")
    p.add_argument("--conditions", nargs="+", default=["action", "karma"], help="default: action karma")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--runs-root", default="runs", help="where run directories go (default runs/)")
    p.add_argument("--report-dir", help="where summary.json, report.pdf and figures go (default RUNS_ROOT/<preset>-report; "
                                        "the committed reports/<preset>-ml100k/ are refreshed only when named here)")
    p.add_argument("--steps", type=int, help="override the preset's training steps")
    p.add_argument("--probes", type=int, default=64, help="history probes per capture (default 64)")
    p.add_argument("--max-len", type=int, default=256, help="tokens per probe (default 256)")
    p.add_argument("--no-base", action="store_true", help="skip the untouched-backbone reference run")
    p.add_argument("--trajectory", nargs="*", metavar="CONDITION",
                   help="also analyze intermediate checkpoints, to follow the metrics over training: of every "
                        "condition, or only of the conditions named (e.g. --trajectory action karma)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a TrainConfig field (repeatable)")
    p.add_argument("--calibration", help="calibrate's calibration.json: the report gives each claim's detection limit "
                                         "as the planted dose it corresponds to (e.g. reports/calibration-smollm2/calibration.json)")
    p.add_argument("--tag", default="", help="name a variant's runs <preset>-<condition>-<TAG>-s<seed> (e.g. --set "
                                            "balance_rho=0.25 --tag rho0.25), so variants sit beside the plain runs")
    p.add_argument("--threads", type=int, help="torch CPU threads for every stage (default: the idle cores, by the "
                                               "1-minute load average; pass 1 when other jobs will share the CPU)")
    p.add_argument("--background", action="store_true", help="run detached; log to --log")
    p.add_argument("--log", help="the log of a --background run (default RUNS_ROOT/reproduce-<preset>.log)")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    import os
    import subprocess
    import sys
    from pathlib import Path

    from karma_probe.core.config import parse_sets
    from karma_probe.core.errors import BadInput
    from karma_probe.workflows.reproduce import Plan, reproduce

    # by default next to the runs it summarizes (runs/ is not tracked): a plain reproduction never
    # rewrites the committed reports/
    if args.threads is not None and args.threads < 1:
        raise BadInput(f"--threads must be >= 1, got {args.threads}")
    if args.calibration:  # read now, not after hours of training: a bad file is one line and exit 2 up front
        from karma_probe.report.study import calibration_doses

        calibration_doses(Path(args.calibration))
    report_dir = Path(args.report_dir or Path(args.runs_root) / f"{args.preset}-report")
    if args.background:
        log = Path(args.log or Path(args.runs_root) / f"reproduce-{args.preset}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = _without(sys.argv[1:], "--background", "--log") + ["--no-progress"]
        with open(log, "ab") as f:
            proc = subprocess.Popen([sys.executable, "-m", "karma_probe", *argv], stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())
        print(f"started in the background (pid {proc.pid}); follow it with: tail -f {log}")
        return 0
    trajectory: bool | tuple[str, ...] = False if args.trajectory is None else tuple(args.trajectory) or True
    if isinstance(trajectory, tuple) and (missing := [c for c in trajectory if c not in args.conditions]):
        raise BadInput(f"--trajectory {' '.join(missing)}: not among --conditions {' '.join(args.conditions)}")
    plan = Plan(preset=args.preset, conditions=tuple(args.conditions), seeds=tuple(args.seeds),
                runs_root=Path(args.runs_root), report_dir=report_dir, steps=args.steps, probes=args.probes,
                max_len=args.max_len, base=not args.no_base, trajectory=trajectory, overrides=parse_sets(args.set),
                threads=args.threads, tag=_tag(args.tag), calibration=Path(args.calibration) if args.calibration else None)
    reproduce(plan, progress=not args.no_progress)
    return 0


def _tag(tag: str) -> str:
    import re

    from karma_probe.core.errors import BadInput

    if tag and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._]*", tag):
        raise BadInput(f"--tag {tag!r}: letters, digits, '.' and '_' only (it goes into run directory names)")
    return tag


def _without(argv: list[str], flag: str, option: str) -> list[str]:
    """``argv`` without ``flag`` and without ``option`` and its value (``--log F`` or ``--log=F``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag or a.startswith(option + "="):
            continue
        elif a == option:
            skip = True
        else:
            out.append(a)
    return out
