"""``xtra demo``: the whole XTRA pipeline on the catch task family (:mod:`xtra.pipeline.demo`)."""

from __future__ import annotations

import argparse

from xtra.cli.common import check_output_dir, positive_float, positive_int


def cmd_demo(args: argparse.Namespace) -> int:
    from xtra.pipeline.demo import run_demo

    run_demo(check_output_dir(args.out, "--out"), minutes=args.minutes, workers=args.workers)
    return 0


def register(sub) -> None:
    """Add ``demo`` to the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "demo",
        help="the whole XTRA pipeline on the catch task family: data, teachers, student, "
        "finetuning against EfficientZero from scratch (~10 min)",
    )
    p.add_argument(
        "--out",
        default="runs/demo",
        help="directory of the demo's runs (default runs/demo); rerunning resumes",
    )
    p.add_argument(
        "--minutes",
        type=positive_float,
        default=10.0,
        help="cap on the demo's minutes with 2 workers (default 10); a stage that reaches its "
        "share of it ends early",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="parallel worker processes (default 2, one per core)",
    )
    p.set_defaults(func=cmd_demo)
