"""Teachers (``xtra teacher``): single-game offline EfficientZero on a fixed dataset (spec B10.2).

The EfficientZero loop of Part A with self-play switched off: PER samples from the dataset
(priorities reset to 1 at load, spec B4.2), values reanalysed with the run's own target network
(fixed n = ``targets.td_steps``: sample ages mean nothing in a fixed dataset), search policies
for a ``targets.reanalyze_ratio`` share of the samples with that target network (the stored
visit distributions otherwise), the same losses and optimiser. Periodic and final evaluation in
the real game, checkpoints and resume as ``xtra train``.
"""

from __future__ import annotations

from pathlib import Path

from xtra.config import Config
from xtra.device import resolve_device
from xtra.learn.loop import (
    TrainResult,
    build_networks,
    evaluator,
    finished_result,
    make_planner,
    reanalyze_targets,
    run_loop,
)
from xtra.rundir import RunDir
from xtra.transfer.sources import dataset_sources, obs_shape_of, open_dataset


def train_teacher(
    dataset: str | Path,
    cfg: Config,
    run_dir: str | Path,
    *,
    game: str | None = None,
    method: str = "EfficientZero (offline teacher)",
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train a teacher on ``dataset`` in ``run_dir`` (resuming it). ``game``: the game the caller
    expects the dataset to be of (DatasetError otherwise); default: the dataset's game."""
    replay, game = open_dataset(dataset, game, cfg)
    run = RunDir(
        run_dir,
        cfg,
        stage="teacher",
        info={"game": game, "method": method, "dataset": str(Path(dataset).resolve())},
    )
    done = finished_result(run)
    if done is not None:
        return done
    device = resolve_device(cfg.device)
    obs_shape = obs_shape_of(replay)
    nets, learner = build_networks(cfg, obs_shape, device)
    planner = make_planner(nets.target, cfg, device, learner.amp)
    sources = dataset_sources(
        {game: replay}, {game: reanalyze_targets(planner, cfg)}, cfg.optim.batch_size
    )
    return run_loop(
        run,
        cfg,
        nets,
        learner,
        sources,
        eval_games=[game],
        eval_fn=evaluator(cfg, device, learner.amp),
        method=method,
        obs_shape=obs_shape,
        progress=progress,
        stop_after=stop_after,
        max_seconds=max_seconds,
    )
