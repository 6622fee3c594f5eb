"""The Streamlit dashboard behind ``karma-probe dashboard``, shipped inside the package.

- ``server``  what the app may read (confined to its runs root), how it caches it, which runs it shows
- ``app.py``  the router Streamlit runs (``streamlit run <APP> -- --runs DIR``)
- ``panels/`` its pages; a new page goes here

``app.py`` and the panels are plain scripts that Streamlit executes by path, never imported. They
live in the package so a regular (non-editable) install serves the dashboard; the repository's
``dashboards/app.py`` only runs this one. Importing this package imports nothing else (no
streamlit): the command only needs the path.

Imports: core, rundir, analyzers, report.
"""

from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
