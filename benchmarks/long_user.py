"""Peak memory and time of `data stats` and of a one-step training run when one user holds
100,000 interactions among 1,000 ordinary ones (issue 28).

    python benchmarks/long_user.py
    python benchmarks/long_user.py --long-user 300000 --users 5000

Each command runs in a fresh process, started through a small Python wrapper whose only child it
is, so the wrapper's ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is that command's peak resident set
(the whole process: interpreter, torch and the model included). Wall time is the command's, start
to exit. The same commands on the same data without the long user are the reference: what the
long user adds is the difference. ``step s`` is the training loop's own time for its one step
(``elapsed_s`` of train_log.jsonl), without the set-up and the evaluation around it.

When the split stored every prefix of every history, the long user alone would have held
Σ_{t<100,000} t ≈ 5·10⁹ history entries (≈ 40 GB of tuple slots): `data stats` was OOM-killed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from karma_probe.data.dataset import write_synthetic

# Runs argv[1:] as its only child and prints (exit code, wall seconds, the child's peak RSS in KiB).
WRAPPER = """import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(json.dumps([rc, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))
"""


def measure(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of ``cmd`` in a fresh process; a failed command is an error."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, check=True)
    rc, wall, kib = json.loads(out.stdout.strip().splitlines()[-1])
    if rc:
        raise SystemExit(f"{' '.join(cmd)} exited {rc}")
    return kib / 1024, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long-user", type=int, default=100_000, help="interactions of the one long user")
    ap.add_argument("--users", type=int, default=1000, help="ordinary users (8 to 20 interactions each)")
    ap.add_argument("--items", type=int, default=500, help="catalogue size")
    args = ap.parse_args()

    cli = [sys.executable, "-m", "karma_probe"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, long_user in (("ordinary users only", 0), (f"+ one user of {args.long_user:,}", args.long_user)):
            data = write_synthetic(Path(tmp) / f"long{long_user}", n_users=args.users, n_items=args.items,
                                   long_user=long_user, name=f"long{long_user}")
            stats_mb, stats_s = measure([*cli, "data", "stats", "--dataset", str(data)])
            run = Path(tmp) / f"run{long_user}"
            train_mb, train_s = measure([*cli, "train", "--preset", "tiny", "--condition", "action", "--steps", "1",
                                         "--threads", "1", "--no-progress", "--dataset", str(data), "--out", str(run)])
            step_s = json.loads((run / "train_log.jsonl").read_text().splitlines()[-1])["elapsed_s"]
            rows.append((label, stats_mb, stats_s, train_mb, train_s, step_s))

    print(f"{args.users:,} ordinary users, {args.items:,} items; train: tiny preset, action, 1 step, 1 thread")
    print(f"{'dataset':<26} {'stats MiB':>10} {'stats s':>8} {'train MiB':>10} {'train s':>8} {'step s':>7}")
    for label, *nums in rows:
        print(f"{label:<26} {nums[0]:>10.0f} {nums[1]:>8.2f} {nums[2]:>10.0f} {nums[3]:>8.2f} {nums[4]:>7.2f}")


if __name__ == "__main__":
    main()
