"""``xtra teacher``, ``xtra distill`` and ``xtra evaluate``: offline pretraining and zero-shot.

``evaluate`` takes the same ``--config``/``--set``/``--device`` flags as every other command, but
they apply on top of the evaluated model's saved config (its protocol, search and evaluation
settings) instead of a preset; ``model.*`` fields are fixed by the weights and cannot change. The
device defaults to the CPU (not the device the model was trained on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xtra.cli.common import (
    add_budget_arg,
    add_config_args,
    add_override_args,
    check_config_file,
    check_output_dir,
    check_output_file,
    config_from,
    fill_from_root,
    max_seconds,
    override_list,
    positive_int,
    print_finals,
    slug,
)

EVALUATE_DEFAULT_DEVICE = "cpu"


def cmd_teacher(args: argparse.Namespace) -> int:
    from xtra.data.dataset_format import read_manifest
    from xtra.transfer.teacher import train_teacher

    cfg = config_from(args)
    if args.run_dir:
        run_dir = check_output_dir(args.run_dir, "--run-dir")
    else:
        game = args.game or read_manifest(Path(args.dataset))["game"]
        run_dir = check_output_dir(
            Path("runs") / f"teacher-{slug(game)}-{cfg.preset}-s{cfg.seed}", "--run-dir"
        )
    result = train_teacher(
        args.dataset,
        cfg,
        run_dir,
        game=args.game,
        method=args.method,
        progress=not args.quiet,
        max_seconds=max_seconds(args),
    )
    print_finals(result)
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from xtra.pipeline.recipes import load_recipe
    from xtra.transfer.distill import distill
    from xtra.transfer.sources import parse_game_map

    data = parse_game_map(args.data, "--data")
    teachers = parse_game_map(args.teacher, "--teacher")
    recipe = load_recipe(args.recipe) if args.recipe else None
    if recipe is not None:
        cfg = config_from(args, preset=recipe.preset, before=recipe.overrides)
    else:
        cfg = config_from(args)
    # a flag not given leaves its config field (transfer.distill_targets) as the config says
    targets = args.targets or cfg.transfer.distill_targets
    if recipe is not None:
        data = fill_from_root(
            recipe.name, recipe.pretrain, data, args.data_root,
            root_flag="--data-root", map_flag="--data",
        )  # fmt: skip
        if targets == "teacher":
            teachers = fill_from_root(
                recipe.name, recipe.pretrain, teachers, args.teacher_root,
                root_flag="--teacher-root", map_flag="--teacher", what="a teacher of ",
            )  # fmt: skip
    name = args.recipe and Path(args.recipe).stem
    run_dir = check_output_dir(
        args.run_dir
        or Path("runs") / f"distill-{targets}-{name or len(data)}-{cfg.preset}-s{cfg.seed}",
        "--run-dir",
    )
    result = distill(
        data,
        cfg,
        run_dir,
        teachers=teachers,
        targets=targets,
        policy_softmax=args.policy_softmax,
        eval_policy=args.eval_policy,
        method=args.method,
        progress=not args.quiet,
        max_seconds=max_seconds(args),
    )
    print_finals(result)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from xtra.act.evaluate import evaluate_saved_model

    check_config_file(args.config)
    out = check_output_file(args.json, "--json") if args.json else None
    res, payload = evaluate_saved_model(
        args.model,
        args.game,
        episodes=args.episodes,
        max_steps=args.max_steps,
        policy=args.policy,
        device=None,
        config_file=args.config,
        overrides=override_list(args),
    )
    seen = "seen" if res.game in payload.get("games", []) else "unseen (zero-shot)"
    print(
        f"{res.game} ({seen}, policy {args.policy}): {res.mean:.2f} +- {res.std:.2f} over "
        f"{len(res.scores)} episodes; model from {payload.get('stage')} on {payload.get('games')}"
    )
    if out is not None:
        from xtra.atomic import atomic_write_text

        summary = {
            "game": res.game,
            "policy": args.policy,
            "model": str(args.model),
            **res.summary(),
        }
        summary["scores"] = res.scores.tolist()
        atomic_write_text(out, json.dumps(summary, indent=2) + "\n")
    return 0


def register(sub) -> None:
    """Add ``teacher``, ``distill`` and ``evaluate`` to the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "teacher", help="train a single-game offline EfficientZero teacher on a dataset (resumes)"
    )
    p.add_argument("dataset", help="dataset directory (`xtra data collect` / import)")
    p.add_argument("--game", help="check the dataset is of this game (default: its own)")
    p.add_argument("--run-dir", help="run directory (default runs/teacher-GAME-PRESET-sSEED)")
    p.add_argument("--method", default="EfficientZero (offline teacher)", help="eval.csv label")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_budget_arg(p)
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
    p.add_argument("--targets", choices=("teacher", "self", "bc"),
                   help="teacher (XTRA), self (multi-game offline RL, App. C) or bc (Table 1); "
                        "default transfer.distill_targets, teacher")  # fmt: skip
    p.add_argument("--policy-softmax", choices=("legal", "all"),
                   help="policy loss over each game's legal ids, or all 18 (XTRA's code, B2); "
                        "default transfer.policy_softmax, legal")  # fmt: skip
    p.add_argument("--eval-policy", choices=("search", "prior"),
                   help="acting in evaluations (default: prior for bc, search otherwise)")  # fmt: skip
    p.add_argument("--recipe", help="a configs/ recipe name or YAML file naming the games")
    p.add_argument("--data-root", help="with --recipe: datasets at DATA_ROOT/<game>")
    p.add_argument("--teacher-root", help="with --recipe: teachers at TEACHER_ROOT/<game>")
    p.add_argument("--run-dir", help="run directory (an existing one is resumed)")
    p.add_argument("--method", help="eval.csv label (default by --targets)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_budget_arg(p)
    add_config_args(p, default_preset=None)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a model on any game, zero-shot on games it never saw",
        description="Evaluate a saved model with the protocol of its own config (spec A9). "
        "--config, --set and --device change that saved config for this evaluation only "
        "(the protocol, search and eval.* settings; model.* is fixed by the weights); "
        f"the device is {EVALUATE_DEFAULT_DEVICE} (not the one the model was trained on) unless "
        "--config, --set device= or --device says otherwise.",
    )
    p.add_argument("model", help="model.pt or a finished run directory")
    p.add_argument("game", help="game name; its legal actions slice the 18-way policy")
    p.add_argument("--episodes", type=positive_int,
                   help="episodes (default: the model's eval.num_episodes)")  # fmt: skip
    p.add_argument("--max-steps", type=positive_int,
                   help="step cap per episode (default: the model's eval.final_max_steps)")  # fmt: skip
    p.add_argument("--policy", default="search", choices=("search", "prior"),
                   help="search (MCTS, spec A9) or prior (argmax of the policy head, no search)")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    add_override_args(p, "the model's saved config", device_default=EVALUATE_DEFAULT_DEVICE)
    p.set_defaults(func=cmd_evaluate)
