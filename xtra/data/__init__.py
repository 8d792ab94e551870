"""Trajectories, prioritized replay and data-side targets (spec A2, A6, B4).

* :class:`TrajectoryBuilder` -> :class:`Trajectory`: one episode (one life in training) kept whole.
* :class:`ReplayBuffer`: flat storage of one game's trajectories, PER sampling of
  :class:`SampledBatch` windows, FIFO eviction, atomic snapshots (memory-mapped when loaded as
  an offline dataset).
* :mod:`xtra.data.targets`: TD length, n-step value and value-prefix targets.
"""

from xtra.data.replay import ReplayBuffer, SampledBatch, beta_at
from xtra.data.sumtree import SumTree
from xtra.data.targets import (
    n_step_value_targets,
    td_steps_for_age,
    value_prefix_targets,
    xtra_as_coded_value_targets,
)
from xtra.data.trajectory import JpegCodec, Trajectory, TrajectoryBuilder

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
