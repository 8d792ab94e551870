"""Teachers (``xtra teacher``): single-game offline EfficientZero on a fixed dataset (spec B10.2).

The EfficientZero loop of Part A with self-play switched off: PER samples from the dataset
(priorities reset to 1 at load, spec B4.2), values reanalysed with the run's own target network
(fixed n = ``replay.td_steps``: sample ages mean nothing in a fixed dataset), search policies
for a ``replay.reanalyze_ratio`` share of the samples with that target network (the stored
visit distributions otherwise), the same losses and optimiser. Periodic and final evaluation in
the real game, checkpoints and resume as ``xtra train``.
"""

from __future__ import annotations

from pathlib import Path

from xtra.config import Config
from xtra.data.dataset import Dataset
from xtra.learn.train import (
    Nets,
    TrainResult,
    finished_result,
    resolve_device,
    run_loop,
    search_eval_fn,
)
from xtra.rundir import RunDir
from xtra.transfer.sources import dataset_sources, obs_shape_of, open_dataset, self_targets


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
    game = game or Dataset(dataset).game
    replay = open_dataset(dataset, game, cfg)
    game = Dataset(dataset).game
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
    nets = Nets.build(cfg, obs_shape, device)
    sources = dataset_sources(
        {game: replay}, {game: self_targets(nets.target_planner(cfg), cfg)}, cfg.optim.batch_size
    )
    return run_loop(
        run,
        cfg,
        nets,
        sources,
        eval_games=[game],
        eval_fn=search_eval_fn(cfg, device, nets.learner.amp),
        method=method,
        obs_shape=obs_shape,
        progress=progress,
        stop_after=stop_after,
        max_seconds=max_seconds,
    )
