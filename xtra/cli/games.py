"""``xtra games``, ``xtra env check``, ``xtra config show|fields``: look before training."""

from __future__ import annotations

import argparse
import sys
import time

from xtra.cli.common import (
    add_config_args,
    check_output_file,
    config_from,
    positive_int,
    slug,
)
from xtra.config import dump_yaml, field_help
from xtra.errors import XtraError
from xtra.games import SUITES

GAME_SETS = ("atari100k", "shooter", "maze", "diverse-pretrain", "diverse-targets", "minatar")


def game_set(name: str) -> list[str]:
    """The games of one of the paper's named sets (XtraError for an unknown name)."""
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


def cmd_games(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from xtra import games

    names = game_set(args.set) if args.set else list(games.GAMES)
    rows = [games.get_game(n) for n in names]
    if args.suite:
        rows = [g for g in rows if g.suite == args.suite]
    table = Table(title=f"xtra game registry ({len(rows)} games)")
    numeric = ("A", "random", "human", "EZ (XTRA T1)", "XTRA (T1/T2)")
    for col in ("game", "suite", "category", "A", "legal ALE ids", *numeric[1:]):
        table.add_column(col, justify="right" if col in numeric else "left")
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


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def cmd_env_check(args: argparse.Namespace) -> int:
    import numpy as np

    from xtra.envs import make_env
    from xtra.envs.render import save_frame_strip

    cfg = config_from(args, check_device=False)
    out = check_output_file(args.out or f"{slug(args.game)}_frames.png", "--out")
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
    stride = max(1, len(frames) // args.num_frames)
    save_frame_strip(frames[::stride][: args.num_frames], out)
    print(f"game: {env.game}")
    print(
        f"observation: {env.obs_shape} uint8 (frame {env.frame_shape}, stack {cfg.env.frame_stack})"
    )
    print(f"legal actions (ALE ids): {list(map(int, env.legal_actions))}")
    print(
        f"random policy: {args.steps} steps, raw return {ret:g}, games finished {len(lengths)}, "
        f"{sps:.0f} steps/s"
    )
    print(f"frames: {out}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    sys.stdout.write(dump_yaml(config_from(args, check_device=False)))
    return 0


def cmd_config_fields(args: argparse.Namespace) -> int:
    for name, default, help_text in field_help():
        print(f"{name} = {default!r}\n    {help_text}")
    return 0


def register(sub) -> None:
    """Add ``games``, ``env`` and ``config`` to the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "games", help="list the game registry (ALE ids, categories, reference and paper scores)"
    )
    p.add_argument("--suite", choices=SUITES, help="only games of this suite")
    p.add_argument("--set", help=f"only a named set: {', '.join(GAME_SETS)}")
    p.set_defaults(func=cmd_games)

    env = sub.add_parser("env", help="environment tools").add_subparsers(
        dest="env_command", metavar="ENV_COMMAND"
    )
    env.required = True
    p = env.add_parser(
        "check", help="step a game with random actions and save a strip of frames as a PNG"
    )
    p.add_argument("game", help="game name, e.g. Breakout, MsPacman, minatar/breakout, toy/catch")
    p.add_argument("--steps", type=positive_int, default=200,
                   help="agent steps to take (default 200)")  # fmt: skip
    p.add_argument("--num-frames", type=positive_int, default=8,
                   help="frames in the PNG strip (default 8)")  # fmt: skip
    p.add_argument("--out", metavar="PNG", help="PNG path (default GAME_frames.png)")
    add_config_args(p)
    p.set_defaults(func=cmd_env_check)

    cfg = sub.add_parser("config", help="inspect configurations").add_subparsers(
        dest="config_command", metavar="CONFIG_COMMAND"
    )
    cfg.required = True
    p = cfg.add_parser(
        "show", help="print the resolved config as YAML (preset + --config + --set + --device)"
    )
    add_config_args(p)
    p.set_defaults(func=cmd_config_show)
    p = cfg.add_parser("fields", help="list every config field with its paper value and meaning")
    p.set_defaults(func=cmd_config_fields)
