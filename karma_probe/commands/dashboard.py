"""Serve the Streamlit dashboard that compares the runs under one runs directory side by side:
an overview table with deltas against a reference run, attention sinks and maps, embedding
geometry, decoded samples, retrieval curves and training curves.

It runs `streamlit run APP -- --runs DIR` (headless, no usage statistics), where APP is the
Streamlit app that ships inside the package (karma_probe/dashboard/app.py), and reads nothing
outside DIR: a symlinked run leading elsewhere is listed with a notice, not opened. Runs that are
half-written or malformed show their reason in the overview; the rest keep working. Needs
streamlit, not torch.
"""

from __future__ import annotations

EXAMPLES = """examples:
  karma-probe dashboard --runs runs
  karma-probe dashboard --runs runs --port 8502
  karma-probe dashboard --runs /data/karma-runs --host 0.0.0.0 --port 8080
  # then link a comparison: http://localhost:8501/attention?run=tiny-action-s0&run=tiny-karma-s0&ref=tiny-action-s0
"""


def add_arguments(p):
    p.add_argument("--runs", required=True, metavar="DIR", help="the runs root: one run directory per child (e.g. runs/)")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--host", default="localhost",
                   help="address to listen on (default localhost; 0.0.0.0 shares it with the network)")


def run(args) -> int:
    import os
    import sys
    from pathlib import Path

    from karma_probe.dashboard import APP
    from karma_probe.core.errors import BadInput

    root = Path(args.runs)
    if not root.is_dir():
        raise BadInput(f"{root}: no such runs directory")
    if not 0 < args.port < 65536:
        raise BadInput(f"--port {args.port}: not a TCP port (1-65535)")
    if not APP.is_file():  # a broken install: the app did not come along with the package
        raise BadInput(f"{APP}: not found; reinstall karma-probe")
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP),
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.port", str(args.port), "--server.address", args.host,
           "--server.fileWatcherType", "none",  # a served tool, not an app being edited: no reload on save
           "--client.toolbarMode", "viewer",  # no "Deploy" button or developer options in the menu
           "--theme.primaryColor", "#4c78a8",  # Streamlit's red would read as "worse", as in the overview
           "--", "--runs", str(root.resolve())]
    print(f"karma-probe dashboard: {root.resolve()} at http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    # exec, not a child: a signal to this process (Ctrl-C, a supervisor's SIGTERM) reaches the
    # server itself, and no orphaned server keeps the port when a wrapper is killed
    os.execv(sys.executable, cmd)
