"""Trajectories, prioritized replay, their storage format and offline datasets (spec A2, A6, B4).

* :mod:`~xtra.data.trajectory`: :class:`TrajectoryBuilder` -> :class:`Trajectory`, one episode
  (one life in training) kept whole.
* :mod:`~xtra.data.replay`: :class:`ReplayBuffer`, flat storage of one game's trajectories, FIFO
  eviction, PER sampling of :class:`SampledBatch` windows; built on :mod:`~xtra.data.rows` (FIFO
  column arrays), :mod:`~xtra.data.frames` (raw or JPEG frames) and :mod:`~xtra.data.sumtree`.
* :mod:`~xtra.data.snapshot`: the on-disk format of a replay snapshot (replay checkpoints and
  dataset chunks): arrays, dtypes, ``meta.json``, read, write, merge.
* Offline datasets: :mod:`~xtra.data.dataset_format` (manifest, chunks, side columns),
  :mod:`~xtra.data.dataset` (reader), :mod:`~xtra.data.dataset_writer`,
  :mod:`~xtra.data.validate`; imports and exports in :mod:`~xtra.data.minari_io` and
  :mod:`~xtra.data.xtra_import`.
* :mod:`~xtra.data.targets`: TD length, n-step value and value-prefix targets.
"""

from xtra.data.frames import JpegCodec
from xtra.data.replay import ReplayBuffer, SampledBatch, beta_at
from xtra.data.sumtree import SumTree
from xtra.data.targets import (
    n_step_value_targets,
    td_steps_for_age,
    value_prefix_targets,
    xtra_as_coded_value_targets,
)
from xtra.data.trajectory import Trajectory, TrajectoryBuilder

__all__ = [
    "JpegCodec",
    "ReplayBuffer",
    "SampledBatch",
    "SumTree",
    "Trajectory",
    "TrajectoryBuilder",
    "beta_at",
    "n_step_value_targets",
    "td_steps_for_age",
    "value_prefix_targets",
    "xtra_as_coded_value_targets",
]
