"""Time each dashboard page (Streamlit AppTest, no browser) on a runs root: the first render and
a rerun (what the user waits for after a widget change). The issue's budget was 2 s per page with
demo runs; it is printed next to each time, never asserted in tests (timings of a shared machine
flake). Exits 1 when a rerun is over --budget.

    python benchmarks/dashboard_render.py runs
    python benchmarks/dashboard_render.py /tmp/tiny-study/runs --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

PAGES = ("overview", "attention", "geometry", "decodability", "retrieval", "training")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="a runs root (one analyzed run directory per child), e.g. the tiny study's runs/")
    p.add_argument("--repeats", type=int, default=3, help="reruns per page; the fastest is reported (default 3)")
    p.add_argument("--budget", type=float, default=2.0, help="seconds allowed for one rerun (default 2)")
    args = p.parse_args()

    from streamlit.testing.v1 import AppTest

    from karma_probe.dashboard import APP

    root = Path(args.runs).resolve()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"runs root {root}, load average {load:.1f} on {os.cpu_count()} cores, {args.repeats} reruns per page")
    print(f"{'page':14s} {'first s':>8s} {'rerun s':>8s}")
    over = []
    for page in PAGES:
        sys.argv = [str(APP), "--runs", str(root)]
        at = AppTest.from_file(str(APP), default_timeout=120)
        t = time.perf_counter()
        at.run()
        if page != "overview":
            at.switch_page(f"panels/{page}.py").run()
        first = time.perf_counter() - t
        if at.exception:
            print(f"{page}: {at.exception[0].value}", file=sys.stderr)
            return 2
        reruns = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            at.run()
            reruns.append(time.perf_counter() - t)
        best = min(reruns)
        print(f"{page:14s} {first:8.2f} {best:8.2f}{'   over budget' if best > args.budget else ''}")
        if best > args.budget:
            over.append(page)
    print(f"budget {args.budget:.1f} s per rerun: {'all within' if not over else 'over: ' + ', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
