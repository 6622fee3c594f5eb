"""``karma-probe`` command line.

Each subcommand lives in ``karma_probe/commands/NAME.py`` with its description (the module
docstring), ``EXAMPLES`` (the end of its ``--help``), ``add_arguments(parser)`` and
``run(args) -> int``; its one-line help is here, in ``COMMANDS``. Only the chosen subcommand's
module is imported (so ``karma-probe check`` never imports torch), which is why the one-line
helps of the others cannot come from their modules.

Exit codes: 0 ok, 1 a check failed, 2 bad input (one line on stderr, no traceback). Bad input is
a usage error, ``BadInput``, or any ``OSError`` (an unwritable, missing or full output path): all
three become one line here, so no subcommand needs its own handling.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from karma_probe import __version__
from karma_probe.core.errors import BadInput, CheckFailed, os_error_line

# name -> one-line help; the module is karma_probe.commands.<name>
COMMANDS = {
    "data": "dataset statistics (MovieLens-100k or any RecBole atomic dataset)",
    "model": "backbone information (smollm2-135m, tiny, or a local HF directory)",
    "train": "train one condition (action | gen | rec | karma) into a run directory",
    "capture": "capture attention / hidden-state statistics of a run on a fixed probe set",
    "analyze": "collapse metrics of a captured run (attention, geometry, decodability, knowledge, retrieval) into RUN/analysis.json",
    "report": "PDF diagnostic report: verdict table, figures per metric family, config appendix",
    "check": "CI regression gate: a run against a baseline file or another run (exit 1 on regression, JUnit XML)",
    "dashboard": "Streamlit dashboard comparing the runs under a runs directory side by side",
    "reproduce": "train, capture, analyze and report every condition and seed (resumable)",
    "study": "one study report from runs made by separate reproductions, a comparison per training regime",
    "diagnose": "your own checkpoints: capture, analyze and compare each tuned model with its base (verdict per metric)",
    "calibrate": "plant each collapse at known doses and measure how every metric responds (positive controls)",
    "ls": "list the runs under a runs directory with their stage and headline metrics",
}

EXAMPLES = """examples:
  karma-probe data stats
  karma-probe reproduce --preset tiny  # train action + karma, capture, analyze, report
  karma-probe train --preset tiny --condition karma --out runs/tiny-karma-s0
  karma-probe capture runs/tiny-karma-s0 && karma-probe analyze runs/tiny-karma-s0
  karma-probe report runs/tiny-action-s0 runs/tiny-karma-s0 -o report.pdf
  karma-probe check runs/tiny-karma-s0 --baseline reports/baselines/tiny.json
  karma-probe dashboard --runs runs
  karma-probe diagnose BASE_DIR TUNED_DIR --probes-file my_prompts.txt -o reports/mine
  karma-probe SUBCOMMAND --help
"""


def _chosen(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too (argparse prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = Parser(
        prog="karma-probe", description="Diagnostics for semantic collapse in LLM-based personalized search.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"karma-probe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    chosen = _chosen(argv)
    for name, help_ in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=help_)
            continue
        module = importlib.import_module(f"karma_probe.commands.{name}")
        p = sub.add_parser(name, help=help_, description=module.__doc__, epilog=module.EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except BadInput as e:
        print(f"karma-probe {args.command}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except CheckFailed as e:
        print(f"karma-probe {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"karma-probe {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os._exit(0)
    except OSError as e:  # after BrokenPipeError, which is one too
        print(f"karma-probe {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
