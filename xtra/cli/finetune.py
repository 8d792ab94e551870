"""``xtra finetune``: finetune a pretrained student on a target game with offline cross-task data."""

from __future__ import annotations

import argparse
from pathlib import Path

from xtra.cli.common import (
    add_budget_arg,
    add_config_args,
    check_output_dir,
    config_from,
    fill_from_root,
    max_seconds,
    positive_int,
    print_finals,
    slug,
)
from xtra.errors import XtraError


def default_run_dir(args: argparse.Namespace, game: str, preset: str, seed: int) -> Path:
    """``runs/finetune-GAME-[ABLATIONS-]PRESET-sSEED``: one directory per condition."""
    tags = [t for t, on in (("nooffline", args.no_offline), ("nopre", args.no_pretraining),
                            ("notw", args.no_task_weights)) if on]  # fmt: skip
    tags += [f"freeze-{f}" for f in args.freeze]
    if args.transfer not in (None, "all"):
        tags.append(f"transfer-{args.transfer}")
    if args.target_batch:
        tags.append(f"tb{args.target_batch}")
    if args.offline_targets not in (None, "data"):
        tags.append(f"targets-{args.offline_targets}")
    return Path("runs") / "-".join(["finetune", slug(game), *tags, preset, f"s{seed}"])


def cmd_finetune(args: argparse.Namespace) -> int:
    from xtra.games import get_game
    from xtra.transfer.finetune import finetune
    from xtra.transfer.sources import parse_game_map

    offline = parse_game_map(args.offline, "--offline")
    teachers = parse_game_map(args.offline_teacher, "--offline-teacher")
    if args.recipe:
        from xtra.pipeline.recipes import load_recipe

        recipe = load_recipe(args.recipe)
        if args.game is not None and get_game(args.game).name != recipe.target:
            raise XtraError(f"recipe {recipe.name} targets {recipe.target}, not {args.game}")
        game = recipe.target
        if not args.no_offline:
            offline = fill_from_root(
                recipe.name, recipe.pretrain[: args.num_games], offline, args.data_root,
                root_flag="--data-root", map_flag="--offline",
            )  # fmt: skip
        cfg = config_from(args, preset=recipe.preset, before=recipe.overrides)
    else:
        if args.game is None:
            raise XtraError("give the target GAME or --recipe NAME")
        if args.num_games is not None:
            raise XtraError("--num-games needs --recipe: it picks the recipe's first N games")
        game = get_game(args.game).name
        cfg = config_from(args)
    run_dir = check_output_dir(
        args.run_dir or default_run_dir(args, game, cfg.preset, cfg.seed), "--run-dir"
    )
    result = finetune(
        game,
        cfg,
        run_dir,
        pretrained=args.pretrained,
        offline=offline,
        teachers=teachers,
        # a flag not given leaves its config field (transfer.*) as the config says
        use_offline=False if args.no_offline else None,
        use_pretraining=False if args.no_pretraining else None,
        task_weights=False if args.no_task_weights else None,
        freeze=tuple(args.freeze) or None,
        components=args.transfer,
        target_batch=args.target_batch,
        policy_softmax=args.policy_softmax,
        offline_targets=args.offline_targets,
        method=args.method,
        progress=not args.quiet,
        max_seconds=max_seconds(args),
    )
    print_finals(result)
    return 0


def register(sub) -> None:
    """Add ``finetune`` to the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "finetune",
        help="finetune a pretrained model online on a target game with offline cross-task data (resumes)",
    )
    p.add_argument("game", nargs="?", help="the target game, e.g. toy/catch or Alien (or --recipe)")
    p.add_argument(
        "--recipe", help="a configs/ recipe: its target, and its pretraining games as offline data"
    )
    p.add_argument(
        "--data-root", help="with --recipe: the dataset of each game at DATA_ROOT/<game>"
    )
    p.add_argument("--num-games", type=positive_int, metavar="N",
                   help="with --recipe: only the first N pretraining games as offline data (Table 7)")  # fmt: skip
    p.add_argument("--pretrained", metavar="CKPT", help="pretrained model.pt or its run directory")
    p.add_argument("--offline", action="append", default=[], metavar="GAME=DATASET",
                   help="an offline dataset of a pretraining game (repeat per game)")  # fmt: skip
    p.add_argument("--no-offline", action="store_true",
                   help="ablation 'w/o cross-task': target data only")  # fmt: skip
    p.add_argument("--no-pretraining", action="store_true",
                   help="ablation: random init (offline data still used)")  # fmt: skip
    p.add_argument("--no-task-weights", action="store_true",
                   help="ablation 'w/o task weights': eta = 1 for every offline game")  # fmt: skip
    p.add_argument("--freeze", action="append", default=[], metavar="COMPONENT",
                   choices=("representation", "dynamics", "prediction", "projection"),
                   help="keep a component fixed (e.g. representation: frozen h); repeatable")  # fmt: skip
    p.add_argument("--transfer", choices=("h", "hg", "hgf", "all"),
                   help="components loaded from --pretrained; the rest random (spec B3; "
                        "default transfer.components, all)")  # fmt: skip
    p.add_argument("--target-batch", type=positive_int, metavar="N",
                   help="target samples per step (default optim.batch_size; App. D doubled batch)")  # fmt: skip
    p.add_argument("--policy-softmax", choices=("legal", "all"),
                   help="policy loss of offline samples over their legal ids or all 18 (B2; "
                        "default transfer.policy_softmax, legal)")  # fmt: skip
    p.add_argument("--offline-targets", choices=("data", "reanalyze", "teacher"),
                   help="targets of offline samples: stored in the data (XTRA), a reanalysis by "
                        "the run's target network, or the games' teachers (default "
                        "transfer.offline_targets, data)")  # fmt: skip
    p.add_argument("--offline-teacher", action="append", default=[], metavar="GAME=CKPT",
                   help="with --offline-targets teacher: an offline game's teacher, model.pt or "
                        "its run dir (repeat per game)")  # fmt: skip
    p.add_argument("--run-dir", help="run directory (an existing one is resumed)")
    p.add_argument("--method", help="eval.csv label (default from the switches)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_budget_arg(p)
    add_config_args(p, default_preset=None)
    p.set_defaults(func=cmd_finetune)
