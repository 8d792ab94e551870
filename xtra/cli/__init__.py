"""The ``xtra`` command line: one subcommand per stage, one module per group of commands.

=================  ===============================================================
module             commands
=================  ===============================================================
``games``          ``games``, ``env check``, ``config show``, ``config fields``
``train``          ``train``
``data``           ``data collect|from-run|validate|info|import-*|export-minari``
``pretrain``       ``teacher``, ``distill``, ``evaluate``
``finetune``       ``finetune``
``pipeline``       ``demo``
``report``         ``report``
``common``         the parser, the config flags, argument and path checks, the errors
=================  ===============================================================

Every subcommand that takes a config accepts ``--preset``, ``--config FILE.yaml``, any number of
``--set SECTION.FIELD=VALUE`` and ``--device`` (see :mod:`xtra.cli.common`). Bad input of any
kind ends with ``error: <one line>`` and exit code 2 (see :mod:`xtra.errors`). Library modules
never import this package.
"""

from __future__ import annotations

from xtra import __version__
from xtra.cli import data, finetune, games, pipeline, pretrain, sweep, train
from xtra.cli import report as report_cmd
from xtra.cli.common import EXIT_USAGE, Parser, run_command

GROUPS = (games, train, data, pretrain, finetune, pipeline)
GROUPS += (report_cmd,)
GROUPS += (sweep,)


def build_parser() -> Parser:
    parser = Parser(
        prog="xtra",
        description="Model-based cross-task transfer (XTRA) on EfficientZero: datasets, "
        "pretraining, finetuning, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"xtra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``xtra ARGV``; returns the exit code (0, 2 for bad input, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


__all__ = ["EXIT_USAGE", "build_parser", "main"]
