"""Whole trajectories, built step by step in self-play (spec A2).

A :class:`Trajectory` is one training episode (one life when ``env.episode_life`` is on) kept in
full: no 400-step blocks, so nothing is lost at block boundaries (D-EZ-5). Frames are stored once,
not as stacks: ``frames[0:S]`` is the stack the episode starts from (EZ: S copies of the reset
frame) and ``frames[S + t]`` is the frame observed after action ``t``, so the observation before
action ``t`` is ``frames[t : t + S]`` and the one after the last action is ``frames[T : T + S]``.

Shape letters (style.md): ``S`` frame stack, ``T`` transitions, ``A`` legal actions of the game,
``C, H, W`` one frame (Atari RGB ``(3, 96, 96)``, MinAtar ``(3, 10, 10)``, toy images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Trajectory:
    """One finished (or cut) episode of one game.

    Attributes:
        frames: ``[S + T, C, H, W]`` uint8, the S initial frames then one frame per step.
        actions: ``[T]`` int64, actions as indices into the game's legal (minimal) action set.
        ale_actions: ``[T]`` int64, the same actions as full ALE ids (0..17), as the dynamics
            network and multi-game policy head see them (spec B2).
        rewards: ``[T]`` float32, clipped rewards (``sign(r)`` on Atari) the targets use.
        raw_rewards: ``[T]`` float32, unclipped rewards, for scores and diagnostics.
        root_visits: ``[T, A]`` float32, normalised root visit counts of the search at each step.
        root_values: ``[T]`` float32, search root value at each step.
        terminated: True if the episode really ended after the last action (game over or life
            loss in training): the value beyond the end is 0. False if it was cut (time limit, end
            of the run): the data just stops.
    """

    frames: np.ndarray
    actions: np.ndarray
    ale_actions: np.ndarray
    rewards: np.ndarray
    raw_rewards: np.ndarray
    root_visits: np.ndarray
    root_values: np.ndarray
    terminated: bool

    @property
    def length(self) -> int:
        """T, the number of transitions."""
        return int(self.actions.shape[0])

    def __len__(self) -> int:
        return self.length

    @property
    def frame_stack(self) -> int:
        """S, inferred from ``len(frames) - T``."""
        return int(self.frames.shape[0]) - self.length

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one frame."""
        return tuple(int(d) for d in self.frames.shape[1:])

    def validate(
        self, *, frame_stack: int, frame_shape: Sequence[int], num_actions: int
    ) -> Trajectory:
        """Raise ``ValueError`` naming the first array whose shape or dtype is wrong."""
        t, s, a = self.length, frame_stack, num_actions
        expected = {
            "frames": ((s + t, *tuple(frame_shape)), np.uint8),
            "actions": ((t,), None),
            "ale_actions": ((t,), None),
            "rewards": ((t,), None),
            "raw_rewards": ((t,), None),
            "root_visits": ((t, a), None),
            "root_values": ((t,), None),
        }
        for name, (shape, dtype) in expected.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.shape != shape:
                got = getattr(arr, "shape", type(arr).__name__)
                raise ValueError(f"trajectory.{name} has shape {got}, expected {shape}")
            if dtype is not None and arr.dtype != dtype:
                raise ValueError(f"trajectory.{name} has dtype {arr.dtype}, expected {dtype}")
        return self


class TrajectoryBuilder:
    """Collects one environment's steps into a :class:`Trajectory`.

    Use one builder per environment: ``start`` at reset (or after a life loss), ``add`` after every
    step, ``finish`` when the episode ends or is cut. :meth:`stack` gives the current ``[S, C, H, W]``
    observation for acting.
    """

    def __init__(self, *, frame_stack: int, frame_shape: Sequence[int], num_actions: int) -> None:
        self.frame_stack = int(frame_stack)
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self.num_actions = int(num_actions)
        self._started = False
        self._reset()

    def _reset(self) -> None:
        self._frames: list[np.ndarray] = []
        self._actions: list[int] = []
        self._ale_actions: list[int] = []
        self._rewards: list[float] = []
        self._raw_rewards: list[float] = []
        self._visits: list[np.ndarray] = []
        self._values: list[float] = []

    @property
    def started(self) -> bool:
        return self._started

    def __len__(self) -> int:
        return len(self._actions)

    def start(self, first_obs_frames: np.ndarray) -> None:
        """Begin a trajectory from its initial stack ``[S, C, H, W]`` uint8 (oldest frame first)."""
        frames = np.asarray(first_obs_frames)
        expected = (self.frame_stack, *self.frame_shape)
        if frames.shape != expected or frames.dtype != np.uint8:
            raise ValueError(
                f"initial frames have shape {frames.shape} {frames.dtype}, expected {expected} uint8"
            )
        self._reset()
        self._frames.extend(np.array(f) for f in frames)
        self._started = True

    def add(
        self,
        action_local: int,
        action_ale: int,
        reward_clipped: float,
        reward_raw: float,
        new_frame: np.ndarray,
        root_visits: np.ndarray,
        root_value: float,
    ) -> None:
        """Record one step: the action taken, its rewards, the frame seen after it, and the search
        statistics of the state it was chosen in (``root_visits [A]``, ``root_value``)."""
        if not self._started:
            raise RuntimeError("TrajectoryBuilder.add called before start")
        if new_frame.shape != self.frame_shape or new_frame.dtype != np.uint8:
            raise ValueError(
                f"frame has shape {new_frame.shape} {new_frame.dtype}, expected {self.frame_shape} uint8"
            )
        if len(root_visits) != self.num_actions:
            raise ValueError(
                f"root_visits has {len(root_visits)} entries, expected {self.num_actions}"
            )
        self._frames.append(np.array(new_frame))
        self._actions.append(int(action_local))
        self._ale_actions.append(int(action_ale))
        self._rewards.append(float(reward_clipped))
        self._raw_rewards.append(float(reward_raw))
        self._visits.append(np.asarray(root_visits, dtype=np.float32))
        self._values.append(float(root_value))

    def stack(self) -> np.ndarray:
        """The current observation ``[S, C, H, W]``: the last S frames."""
        return np.stack(self._frames[-self.frame_stack :])

    def split(self, length: int, overlap: int) -> Trajectory:
        """Cut off the first ``length + overlap`` transitions as a (cut) trajectory and keep
        building from transition ``length`` on: the last ``overlap`` transitions are in both, so
        that every target of the first ``length`` positions is inside the piece (spec A6.4:
        K unroll steps plus n TD steps). The builder's trajectory then starts at the state
        after transition ``length - 1``."""
        if not self._started:
            raise RuntimeError("TrajectoryBuilder.split called before start")
        if length < 1 or overlap < 0 or length + overlap > len(self):
            raise ValueError(
                f"cannot split {length} + {overlap} transitions off a trajectory of {len(self)}"
            )
        end = length + overlap
        piece = self._build(
            self._frames[: self.frame_stack + end],
            slice(0, end),
            terminated=False,
        )
        self._frames = self._frames[length:]
        for name in ("_actions", "_ale_actions", "_rewards", "_raw_rewards", "_visits", "_values"):
            setattr(self, name, getattr(self, name)[length:])
        return piece

    def _build(self, frames: list[np.ndarray], part: slice, terminated: bool) -> Trajectory:
        visits = self._visits[part]
        return Trajectory(
            frames=np.stack(frames),
            actions=np.asarray(self._actions[part], dtype=np.int64),
            ale_actions=np.asarray(self._ale_actions[part], dtype=np.int64),
            rewards=np.asarray(self._rewards[part], dtype=np.float32),
            raw_rewards=np.asarray(self._raw_rewards[part], dtype=np.float32),
            root_visits=(
                np.stack(visits) if visits else np.zeros((0, self.num_actions), dtype=np.float32)
            ),
            root_values=np.asarray(self._values[part], dtype=np.float32),
            terminated=bool(terminated),
        )

    def finish(self, terminated: bool) -> Trajectory:
        """Close the trajectory (``terminated``: see :class:`Trajectory`) and reset the builder."""
        if not self._started:
            raise RuntimeError("TrajectoryBuilder.finish called before start")
        traj = self._build(self._frames, slice(None), terminated)
        self._reset()
        self._started = False
        return traj
