"""The ``xtra`` command line: one subcommand per stage.

Every subcommand that takes a config accepts ``--preset``, ``--config FILE.yaml`` and any number
of ``--set SECTION.FIELD=VALUE``. Bad input of any kind ends with ``error: <one line>`` and exit
code 2 (see :mod:`xtra.errors`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from xtra import __version__
from xtra.config import PRESETS, dump_yaml, field_help, make_config
from xtra.data.cli_data import add_data_commands
from xtra.errors import XtraError
from xtra.transfer.cli_finetune import add_finetune_commands
from xtra.transfer.cli_transfer import add_transfer_commands

EXIT_USAGE = 2


def _add_config_args(p: argparse.ArgumentParser, default_preset: str = "paper") -> None:
    p.add_argument(
        "--preset",
        default=default_preset,
        help=f"starting hyper-parameters: {', '.join(PRESETS)} (default {default_preset})",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML file of fields to override (full or partial config)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one field, e.g. --set search.num_simulations=16 (repeatable)",
    )


def _config_from(args: argparse.Namespace):
    return make_config(args.preset, args.config, args.overrides)


# --------------------------------------------------------------------------- xtra games


def cmd_games(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from xtra import games

    names = _game_set(args.set) if args.set else list(games.GAMES)
    rows = [games.get_game(n) for n in names]
    if args.suite:
        rows = [g for g in rows if g.suite == args.suite]
    table = Table(title=f"xtra game registry ({len(rows)} games)")
    for col in (
        "game",
        "suite",
        "category",
        "A",
        "legal ALE ids",
        "random",
        "human",
        "EZ (XTRA T1)",
        "XTRA (T1/T2)",
    ):
        table.add_column(
            col,
            justify="right"
            if col in ("A", "random", "human", "EZ (XTRA T1)", "XTRA (T1/T2)")
            else "left",
        )
    for g in rows:
        ez = g.paper_scores.get("EfficientZero")
        xtra = g.paper_scores.get("XTRA", g.paper_scores.get("XTRA (diverse)"))
        table.add_row(
            g.name,
            g.suite,
            g.category,
            str(g.num_actions),
            ",".join(map(str, g.legal_actions)),
            _fmt(g.random_score),
            _fmt(g.human_score),
            _fmt(ez),
            _fmt(xtra),
        )
    Console(width=max(120, Console().width)).print(table)
    return 0


def _game_set(name: str) -> list[str]:
    from xtra import games

    sets = {
        "atari100k": games.ATARI100K,
        "shooter": games.SHOOTER,
        "maze": games.MAZE,
        "diverse-pretrain": games.DIVERSE_PRETRAIN,
        "diverse-targets": games.DIVERSE_TARGETS,
        "minatar": games.MINATAR,
    }
    if name not in sets:
        raise XtraError(f"unknown game set {name!r}: choose one of {', '.join(sets)}")
    return list(sets[name])


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


# --------------------------------------------------------------------------- xtra env check


def cmd_env_check(args: argparse.Namespace) -> int:
    import numpy as np

    from xtra.envs import make_env
    from xtra.envs.render import save_frame_strip

    cfg = _config_from(args)
    env = make_env(
        args.game, cfg.env, num_envs=1, seed=cfg.seed, mode="eval", max_episode_steps=args.steps
    )
    rng = np.random.default_rng(cfg.seed)
    obs = env.reset()
    frames = [obs[0, -env.frame_shape[0] :]]
    ret, lengths, t0 = 0.0, [], time.perf_counter()
    for _ in range(args.steps):
        res = env.step(rng.integers(env.num_actions, size=1))
        ret += float(res.raw_reward[0])
        frames.append(res.final_obs[0, -env.frame_shape[0] :])
        if res.game_over[0]:
            lengths.append(int(res.episode_length[0]))
    sps = args.steps / (time.perf_counter() - t0)
    env.close()
    out = Path(args.out or f"{args.game.replace('/', '_')}_frames.png")
    stride = max(1, len(frames) // args.num_frames)
    save_frame_strip(frames[::stride][: args.num_frames], out)
    print(f"game: {env.game}")
    print(
        f"observation: {env.obs_shape} uint8 (frame {env.frame_shape}, stack {cfg.env.frame_stack})"
    )
    print(f"legal actions (ALE ids): {list(map(int, env.legal_actions))}")
    print(
        f"random policy: {args.steps} steps, raw return {ret:g}, games finished {len(lengths)}, {sps:.0f} steps/s"
    )
    print(f"frames: {out}")
    return 0


# --------------------------------------------------------------------------- xtra train


def cmd_train(args: argparse.Namespace) -> int:
    from xtra.learn.train import train

    cfg = _config_from(args)
    run_dir = Path(
        args.run_dir
        or Path("runs") / f"train-{args.game.replace('/', '_')}-{cfg.preset}-s{cfg.seed}"
    )
    result = train(args.game, cfg, run_dir, method=args.method, progress=not args.quiet)
    if result.final is not None:
        f = result.final
        print(
            f"final evaluation on {f.game}: {f.mean:.2f} +- {f.std:.2f} over {len(f.scores)} episodes "
            f"({result.env_steps} env steps, {result.steps} training steps)"
        )
    print(f"run directory: {result.run_dir}")
    return 0


# --------------------------------------------------------------------------- xtra demo


def cmd_demo(args: argparse.Namespace) -> int:
    from xtra.demo import run_demo

    run_demo(args.out, minutes=args.minutes, workers=args.workers)
    return 0


# --------------------------------------------------------------------------- xtra config


def cmd_config_show(args: argparse.Namespace) -> int:
    sys.stdout.write(dump_yaml(_config_from(args)))
    return 0


def cmd_config_fields(args: argparse.Namespace) -> int:
    for name, default, help_text in field_help():
        print(f"{name} = {default!r}\n    {help_text}")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xtra",
        description="Model-based cross-task transfer (XTRA) on EfficientZero: datasets, pretraining, finetuning, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"xtra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "games", help="list the game registry (ALE ids, categories, reference and paper scores)"
    )
    p.add_argument("--suite", choices=("atari", "minatar", "toy"), help="only games of this suite")
    p.add_argument(
        "--set",
        help="only a named set: atari100k, shooter, maze, diverse-pretrain, diverse-targets, minatar",
    )
    p.set_defaults(func=cmd_games)

    env = sub.add_parser("env", help="environment tools").add_subparsers(
        dest="env_command", metavar="ENV_COMMAND"
    )
    env.required = True
    p = env.add_parser(
        "check", help="step a game with random actions and save a strip of frames as a PNG"
    )
    p.add_argument("game", help="game name, e.g. Breakout, MsPacman, minatar/breakout, toy/catch")
    p.add_argument("--steps", type=int, default=200, help="agent steps to take (default 200)")
    p.add_argument("--num-frames", type=int, default=8, help="frames in the PNG strip (default 8)")
    p.add_argument("--out", help="PNG path (default GAME_frames.png)")
    _add_config_args(p)
    p.set_defaults(func=cmd_env_check)

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
    _add_config_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "demo",
        help="the whole XTRA pipeline on MinAtar: data, teachers, student, finetuning (~15 min)",
    )
    p.add_argument(
        "--out",
        default="runs/demo",
        help="directory of the demo's runs (default runs/demo); rerunning resumes",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=15.0,
        help="about how long the whole demo takes with 2 workers (default 15)",
    )
    p.add_argument(
        "--workers", type=int, default=2, help="parallel worker processes (default 2, one per core)"
    )
    p.set_defaults(func=cmd_demo)

    cfg = sub.add_parser("config", help="inspect configurations").add_subparsers(
        dest="config_command", metavar="CONFIG_COMMAND"
    )
    cfg.required = True
    p = cfg.add_parser("show", help="print the resolved config as YAML (preset + file + --set)")
    _add_config_args(p)
    p.set_defaults(func=cmd_config_show)
    p = cfg.add_parser("fields", help="list every config field with its paper value and meaning")
    p.set_defaults(func=cmd_config_fields)
    add_data_commands(sub, _add_config_args)
    add_transfer_commands(sub, _add_config_args)
    add_finetune_commands(sub, _add_config_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except XtraError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "interrupted: run the same command again to resume where the last checkpoint left it",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
