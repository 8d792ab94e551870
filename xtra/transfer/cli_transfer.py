"""``xtra teacher``, ``xtra distill`` and ``xtra evaluate``: offline pretraining and zero-shot.

Registered by :func:`add_transfer_commands` from :mod:`xtra.cli`; bad input ends with a one-line
``error:`` and exit code 2 (see :mod:`xtra.errors`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xtra.errors import XtraError


def _print_finals(result) -> None:
    for game, f in (result.finals or {}).items():
        print(
            f"final evaluation on {game}: {f.mean:.2f} +- {f.std:.2f} over {len(f.scores)} episodes"
        )
    print(f"run directory: {result.run_dir}")


def cmd_teacher(args: argparse.Namespace) -> int:
    from xtra.cli import _config_from
    from xtra.data.dataset import Dataset
    from xtra.transfer.teacher import train_teacher

    cfg = _config_from(args)
    game = args.game or Dataset(args.dataset).game
    run_dir = (
        args.run_dir or Path("runs") / f"teacher-{game.replace('/', '_')}-{cfg.preset}-s{cfg.seed}"
    )
    result = train_teacher(
        args.dataset, cfg, run_dir, game=args.game, method=args.method, progress=not args.quiet
    )
    _print_finals(result)
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from xtra.cli import _config_from
    from xtra.config import make_config
    from xtra.transfer.distill import distill
    from xtra.transfer.recipes import game_dir, load_recipe
    from xtra.transfer.sources import parse_game_map

    data = parse_game_map(args.data, "--data")
    teachers = parse_game_map(args.teacher, "--teacher")
    if args.recipe:
        recipe = load_recipe(args.recipe)
        for game in recipe.pretrain:
            if game not in data:
                if not args.data_root:
                    raise XtraError(
                        f"recipe {recipe.name} needs {game}: give --data-root or --data"
                    )
                data[game] = str(Path(args.data_root) / game_dir(game))
            if args.targets == "teacher" and game not in teachers:
                if not args.teacher_root:
                    raise XtraError(
                        f"recipe {recipe.name} needs a teacher of {game}: give --teacher-root or --teacher"
                    )
                teachers[game] = str(Path(args.teacher_root) / game_dir(game))
        preset = args.preset or recipe.preset
        cfg = make_config(preset, args.config, [*recipe.overrides, *args.overrides])
    else:
        args.preset = args.preset or "paper"
        cfg = _config_from(args)
    name = args.recipe and Path(args.recipe).stem
    run_dir = (
        args.run_dir
        or Path("runs") / f"distill-{args.targets}-{name or len(data)}-{cfg.preset}-s{cfg.seed}"
    )
    result = distill(
        data,
        cfg,
        run_dir,
        teachers=teachers,
        targets=args.targets,
        policy_softmax=args.policy_softmax,
        eval_policy=args.eval_policy,
        method=args.method,
        progress=not args.quiet,
    )
    _print_finals(result)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from xtra.transfer.zero_shot import zero_shot

    res, payload = zero_shot(
        args.model,
        args.game,
        episodes=args.episodes,
        max_steps=args.max_steps,
        policy=args.policy,
        device=args.device,
        overrides=args.overrides,
    )
    seen = "seen" if res.game in payload.get("games", []) else "unseen (zero-shot)"
    print(
        f"{res.game} ({seen}, policy {args.policy}): {res.mean:.2f} +- {res.std:.2f} over "
        f"{len(res.scores)} episodes; model from {payload.get('stage')} on {payload.get('games')}"
    )
    if args.json:
        summary = {
            "game": res.game,
            "policy": args.policy,
            "model": str(args.model),
            **res.summary(),
        }
        summary["scores"] = res.scores.tolist()
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def add_transfer_commands(sub, add_config_args) -> None:
    """Add ``teacher``, ``distill`` and ``evaluate`` to the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "teacher", help="train a single-game offline EfficientZero teacher on a dataset (resumes)"
    )
    p.add_argument("dataset", help="dataset directory (`xtra data collect` / import)")
    p.add_argument("--game", help="check the dataset is of this game (default: its own)")
    p.add_argument("--run-dir", help="run directory (default runs/teacher-GAME-PRESET-sSEED)")
    p.add_argument("--method", default="EfficientZero (offline teacher)", help="eval.csv label")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(p)
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser(
        "distill",
        help="pretrain one multi-game student: teacher distillation, offline RL or BC (resumes)",
    )
    p.add_argument("--data", action="append", default=[], metavar="GAME=DATASET",
                   help="a pretraining dataset (repeat per game)")  # fmt: skip
    p.add_argument("--teacher", action="append", default=[], metavar="GAME=CKPT",
                   help="the frozen teacher of a game: model.pt or its run dir (repeat per game)")  # fmt: skip
    p.add_argument("--targets", default="teacher", choices=("teacher", "self", "bc"),
                   help="teacher (XTRA), self (multi-game offline RL, App. C) or bc (Table 1)")  # fmt: skip
    p.add_argument("--policy-softmax", default="legal", choices=("legal", "all"),
                   help="policy loss over each game's legal ids, or all 18 (XTRA's code, B2)")  # fmt: skip
    p.add_argument("--eval-policy", choices=("search", "prior"),
                   help="acting in evaluations (default: prior for bc, search otherwise)")  # fmt: skip
    p.add_argument("--recipe", help="a configs/ recipe name or YAML file naming the games")
    p.add_argument("--data-root", help="with --recipe: datasets at DATA_ROOT/<game>")
    p.add_argument("--teacher-root", help="with --recipe: teachers at TEACHER_ROOT/<game>")
    p.add_argument("--run-dir", help="run directory (an existing one is resumed)")
    p.add_argument("--method", help="eval.csv label (default by --targets)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(p, default_preset=None)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser(
        "evaluate", help="evaluate a model on any game, zero-shot on games it never saw"
    )
    p.add_argument("model", help="model.pt or a finished run directory")
    p.add_argument("game", help="game name; its legal actions slice the 18-way policy")
    p.add_argument("--episodes", type=int, help="episodes (default: the model's eval.num_episodes)")
    p.add_argument("--max-steps", type=int, help="step cap (default: eval.final_max_steps)")
    p.add_argument("--policy", default="search", choices=("search", "prior"),
                   help="search (MCTS, spec A9) or prior (argmax of the policy head, no search)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="S.F=V",
                   help="change the model's config for this evaluation, e.g. eval.action_ties=prior")  # fmt: skip
    p.set_defaults(func=cmd_evaluate)
