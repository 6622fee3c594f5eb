"""The Streamlit app behind ``karma-probe dashboard``, shipped inside the package.

``app.py`` is the router Streamlit runs (``streamlit run <APP> -- --runs DIR``) and ``panels/``
holds its pages; both are plain scripts that Streamlit executes by path, never imported. They
live in the package so a regular (non-editable) install serves the dashboard; the repository's
``dashboards/app.py`` only runs this one. Importing this package imports nothing else (no
streamlit): the command only needs the path.
"""

from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
