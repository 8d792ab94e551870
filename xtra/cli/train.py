"""``xtra train``: single-task EfficientZero online on one game (resumes an interrupted run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from xtra.cli.common import (
    add_budget_arg,
    add_config_args,
    check_output_dir,
    config_from,
    max_seconds,
    slug,
)


def cmd_train(args: argparse.Namespace) -> int:
    from xtra.learn.train import train

    cfg = config_from(args)
    run_dir = check_output_dir(
        args.run_dir or Path("runs") / f"train-{slug(args.game)}-{cfg.preset}-s{cfg.seed}",
        "--run-dir",
    )
    result = train(
        args.game,
        cfg,
        run_dir,
        method=args.method,
        progress=not args.quiet,
        max_seconds=max_seconds(args),
    )
    if result.final is not None:
        f = result.final
        print(
            f"final evaluation on {f.game}: {f.mean:.2f} +- {f.std:.2f} over {len(f.scores)} "
            f"episodes ({result.env_steps} env steps, {result.steps} training steps)"
        )
    print(f"run directory: {result.run_dir}")
    return 0


def register(sub) -> None:
    """Add ``train`` to the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "train",
        help="train single-task EfficientZero online on one game (resumes an interrupted run)",
    )
    p.add_argument("game", help="game name, e.g. Breakout, minatar/breakout, toy/catch")
    p.add_argument(
        "--run-dir",
        help="run directory (default runs/train-GAME-PRESET-sSEED); an existing one is resumed",
    )
    p.add_argument(
        "--method",
        default="EfficientZero",
        help="label written to eval.csv (default EfficientZero)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_budget_arg(p)
    add_config_args(p)
    p.set_defaults(func=cmd_train)
