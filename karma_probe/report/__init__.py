"""Everything that reads finished runs back and turns them into numbers with intervals, figures,
a PDF and a CI verdict. Torch-free throughout: ``karma-probe check`` and the dashboard install light.

- ``results``        a run directory as plain data (:class:`Run`), grouping runs into conditions
- ``stats``          confidence intervals (seeds, bootstrap over users), Holm correction
- ``study``          the per-condition table, the paper's claims verdict, detection limits
- ``dose_response``  a calibration's slopes and the dose a measured difference corresponds to
- ``figures/``       renderer-neutral figure specs (plotly for the dashboard, matplotlib for the PDF);
                     a new figure goes here
- ``pdf``            the PDF diagnostic report
- ``check``          the CI regression gate (baseline files, exit 1 on a regression)

Imports: core, rundir, analyzers (their declared directions and formats, never their torch parts).
"""
