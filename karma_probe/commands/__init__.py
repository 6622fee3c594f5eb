"""One module per ``karma-probe`` subcommand (the one-line helps are in karma_probe/cli.py).

Each module holds its description (the docstring), ``EXAMPLES``, ``add_arguments(parser)`` and
``run(args) -> int``; a new flag goes in its command's ``add_arguments``, a new command is a new
module here plus its line in ``cli.COMMANDS``.

Imports: core, rundir, data, model, train, capture, analyzers, report, calibration, workflows, dashboard.
"""
