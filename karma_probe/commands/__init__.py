"""One module per ``karma-probe`` subcommand (see karma_probe/cli.py)."""
