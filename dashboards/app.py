"""From a clone: ``streamlit run dashboards/app.py -- --runs DIR`` serves the dashboard.

The app itself ships inside the package (karma_probe/dashboard/: the router app.py and its
pages in panels/), so that a regular install serves it too (``karma-probe dashboard --runs DIR``).
This file only runs that router, as if Streamlit had been started with it.
"""

import runpy

from karma_probe.dashboard import APP

runpy.run_path(str(APP), run_name="__main__")
