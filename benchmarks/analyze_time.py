"""Time ``karma-probe analyze`` per analyzer on a run whose capture exists (target: SmolLM2-135M
under 5 minutes on 2 CPU cores).

The run is analyzed through a scratch directory that links its checkpoint and capture, so the
run's own analysis.json is left alone. Prints one line per analyzer (model loading on its own
line; the first analyzer that needs the fit-split embeddings also carries their cost) and the
total wall time, and exits 1 if the total exceeds --budget.

    python benchmarks/analyze_time.py runs/smollm2-karma-s0
    python benchmarks/analyze_time.py runs/smollm2-base --metrics lm_ppl,fact_acc --threads 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory with config.json, checkpoint/ and capture/")
    p.add_argument("--metrics", help="comma-separated metric names (default: all)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: analyze's choice, the idle cores)")
    p.add_argument("--budget", type=float, default=300.0, help="seconds allowed in total (default 300)")
    args = p.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t_import = time.perf_counter()
    from karma_probe.analyzers.run import LOAD_MODEL, analyze_run

    t_import = time.perf_counter() - t_import
    from karma_probe.rundir import layout

    run = Path(args.run).resolve()
    with tempfile.TemporaryDirectory(prefix="analyze-bench-") as tmp:
        scratch = Path(tmp) / run.name
        scratch.mkdir()
        for name in (layout.CONFIG, layout.METRICS):
            if (run / name).is_file():
                shutil.copy2(run / name, scratch / name)
        for name in (layout.CHECKPOINT, layout.CAPTURE):
            if (run / name).exists():
                (scratch / name).symlink_to(run / name, target_is_directory=True)
        t0 = time.perf_counter()
        out = analyze_run(scratch, metrics=args.metrics, progress=sys.stderr.isatty(), threads=args.threads)
        total = time.perf_counter() - t0

    seconds = out["analyzed"]["seconds"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"run {run} ({out['run'].get('model')}, {out['run'].get('condition')}), "
          f"torch threads {out['analyzed'].get('threads')}, load average {load:.1f} on {os.cpu_count()} cores")
    print(f"{'(imports)':20s} {t_import:7.1f} s   (not in the total)")
    for name, s in seconds.items():
        note = "" if name == LOAD_MODEL else f"   {out['summary'].get(name)!s:.8}"
        print(f"{name:20s} {s:7.1f} s{note}")
    for name, reason in out["absent"].items():
        print(f"{name:20s}  absent   ({reason})")
    print(f"{'total':20s} {total:7.1f} s   (budget {args.budget:.0f} s)")
    return 0 if total <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
