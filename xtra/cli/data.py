"""``xtra data ...``: collect, keep a run's replay, validate, inspect, import and export datasets.

``validate`` prints every problem, then exits 2 if there is any; every other bad input is one
``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json

from xtra.cli.common import (
    add_config_args,
    check_input_dir,
    check_output_dir,
    check_output_file,
    config_from,
    nonnegative_float,
    positive_int,
)
from xtra.errors import CheckpointError, DatasetError

EXIT_PROBLEMS = 2


def cmd_collect(args: argparse.Namespace) -> int:
    from xtra.act.collect import collect, parse_policy

    kind, _ = parse_policy(args.policy)
    cfg = config_from(args, check_device=kind == "checkpoint")
    out = check_output_dir(args.out, "--out")
    ds = collect(
        args.game,
        cfg,
        out,
        steps=args.steps,
        policy=args.policy,
        chunk_steps=args.chunk_steps,
        noise=args.noise,
        temperature=args.temperature,
        progress=not args.quiet,
    )
    print(
        f"dataset: {ds.path} ({ds.game}, {ds.num_transitions} transitions, "
        f"{ds.num_trajectories} trajectories)"
    )
    return 0


def cmd_from_run(args: argparse.Namespace) -> int:
    from xtra.config import to_dict
    from xtra.data.dataset_writer import copy_snapshot_as_dataset
    from xtra.data.replay import ReplayBuffer
    from xtra.rundir import latest_checkpoint, read_run_config, read_run_info, verify_checkpoint

    run = check_input_dir(args.run_dir, "RUN_DIR", "the directory of an `xtra train` run")
    out = check_output_dir(args.out, "OUT")
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise DatasetError(
            f"{run} has no checkpoints/LATEST: give the directory of an `xtra train` run"
        )
    replay = ckpt / "replay"
    if not (replay / "LATEST").exists():
        raise DatasetError(
            f"{ckpt} has no replay snapshot: only stages with a replay buffer can be kept"
        )
    info = read_run_info(run)
    game = info.get("game")
    if not game:
        raise DatasetError(f"{run}/run.json does not name the game: is it an `xtra train` run?")
    if not verify_checkpoint(ckpt):
        # A checkpoint written before checksums: read the snapshot once, so that a damaged one
        # is reported as the run's checkpoint, not as a dataset.
        try:
            ReplayBuffer.load(replay, mmap=True)
        except CheckpointError as e:
            raise CheckpointError(
                f"the replay in the run's checkpoint {ckpt} is damaged ({e}): restore it from "
                "a backup (only the newest checkpoint is kept), or keep another run's replay"
            ) from None
    run_cfg = read_run_config(run)
    protocol = to_dict(run_cfg)["env"] if run_cfg is not None else {}
    ds = copy_snapshot_as_dataset(
        replay,
        out,
        game=game,
        protocol=protocol,
        behaviour_policy={"kind": "run", "stage": info.get("stage"), "checkpoint": ckpt.name},
        tool="xtra data from-run",
        source={"run_dir": str(run.resolve()), "checkpoint": ckpt.name},
        notes=[
            "the replay buffer of a training run (self-play with a changing network, as the "
            "paper's data); life-loss / game-over flags are unknown (-1)"
        ],
    )
    print(f"dataset: {ds.path} ({ds.game}, {ds.num_transitions} transitions from {ckpt.name})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from xtra.data.validate import validate_dataset

    problems = validate_dataset(args.path, checksums=not args.no_checksums)
    for p in problems:
        print(f"problem: {p}")
    if problems:
        print(f"{args.path}: {len(problems)} problem(s)")
        return EXIT_PROBLEMS
    print(f"{args.path}: ok")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from xtra.data.dataset import Dataset
    from xtra.envs.render import save_frame_strip

    frames = check_output_file(args.frames, "--frames") if args.frames else None
    ds = Dataset(args.path)
    info = ds.info()
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for key, value in info.items():
            if isinstance(value, dict):
                value = ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
                )
            print(f"{key}: {value}")
    if frames is not None:
        out = save_frame_strip(ds.frames_for_strip(args.num_frames), frames)
        print(f"frames: {out}")
    return 0


def _importer(kind: str):
    """``data import-minari`` and ``data import-xtra``: the same command around two readers."""

    def cmd(args: argparse.Namespace) -> int:
        cfg = config_from(args, check_device=False)
        out = check_output_dir(args.out, "OUT")
        if kind == "minari":
            from xtra.data.minari_io import import_minari as read
        else:
            from xtra.data.xtra_import import import_xtra_replay as read
        ds = read(args.src, out, game=args.game, cfg=cfg)
        print(f"dataset: {ds.path} ({ds.game}, {ds.num_transitions} transitions)")
        return 0

    return cmd


def cmd_export_minari(args: argparse.Namespace) -> int:
    from xtra.data.minari_io import export_minari

    if args.minari_path:
        check_output_dir(args.minari_path, "--minari-path")
    dataset_id = export_minari(args.path, args.dataset_id, data_path=args.minari_path)
    print(f"minari dataset: {dataset_id}")
    return 0


IMPORTERS = {
    # name: (help, SRC metavar, SRC help, --game help)
    "import-minari": (
        "import a Minari dataset of an ALE game",
        "dataset",
        "Minari dataset id (local) or path of its directory",
        "the game the Minari dataset is of",
    ),
    "import-xtra": (
        "import XTRA/EfficientZero replay buffers (spec B4.1 layout)",
        "src",
        "a replay/ directory with shards 0..7, or a directory of runs",
        "the game the buffers are of",
    ),
}


def register(sub) -> None:
    """Add the ``data`` group to the top-level subparsers ``sub``."""
    data = sub.add_parser(
        "data", help="offline datasets: collect, validate, inspect, import, export"
    )
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    dsub.required = True

    p = dsub.add_parser("collect", help="act in a game and write a dataset (resumable)")
    p.add_argument("game", help="game name, e.g. Breakout, minatar/breakout, toy/catch")
    p.add_argument("--out", required=True, help="dataset directory (an existing one is resumed)")
    p.add_argument("--steps", type=positive_int, required=True, help="agent steps to collect")
    p.add_argument(
        "--policy",
        default="random",
        help="behaviour policy: random (uniform) or checkpoint:PATH (search with a model.pt)",
    )
    p.add_argument("--chunk-steps", type=positive_int, default=10_000,
                   help="agent steps per commit (default 10000)")  # fmt: skip
    p.add_argument("--noise", action="store_true", help="Dirichlet noise at the root (checkpoint)")
    p.add_argument("--temperature", type=nonnegative_float, default=0.25,
                   help="visit-count temperature (checkpoint; 0: the most visited action; "
                        "default 0.25)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(p, default_preset="paper")
    p.set_defaults(func=cmd_collect)

    p = dsub.add_parser(
        "from-run", help="keep the replay buffer of an `xtra train` run as a dataset"
    )
    p.add_argument("run_dir", help="run directory (reads checkpoints/LATEST -> step-N/replay)")
    p.add_argument("out", help="dataset directory to write")
    p.set_defaults(func=cmd_from_run)

    p = dsub.add_parser("validate", help="check structure, shapes, dtypes, checksums, actions")
    p.add_argument("path", help="dataset directory")
    p.add_argument("--no-checksums", action="store_true", help="skip the SHA-256 checks")
    p.set_defaults(func=cmd_validate)

    p = dsub.add_parser("info", help="summary: episodes, steps, scores, action histogram")
    p.add_argument("path", help="dataset directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--frames", metavar="PNG", help="save a strip of frames of the first episode")
    p.add_argument("--num-frames", type=positive_int, default=8,
                   help="frames in the strip (default 8)")  # fmt: skip
    p.set_defaults(func=cmd_info)

    for name, (help_text, src, src_help, game_help) in IMPORTERS.items():
        p = dsub.add_parser(name, help=help_text)
        p.add_argument("src", metavar=src, help=src_help)
        p.add_argument("out", help="dataset directory to write")
        p.add_argument("--game", required=True, help=game_help)
        add_config_args(p, default_preset="paper")
        p.set_defaults(func=_importer(name.removeprefix("import-")))

    p = dsub.add_parser("export-minari", help="export a dataset as a Minari dataset")
    p.add_argument("path", help="dataset directory")
    p.add_argument("dataset_id", help="Minari dataset id, e.g. xtra/breakout/random-v0")
    p.add_argument("--minari-path", help="Minari datasets root (default: MINARI_DATASETS_PATH)")
    p.set_defaults(func=cmd_export_minari)
