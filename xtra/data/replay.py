"""Flat trajectory storage with prioritized replay: the learner's data source (spec A2, A6, B4).

One :class:`ReplayBuffer` holds the trajectories of one game: the online replay of self-play, or
an offline dataset loaded from disk (memory-mapped), or a distillation source. The learner draws
a :class:`SampledBatch` from each source and makes targets from it (:mod:`xtra.data.targets`).

Layout. Whole trajectories (no 400-step blocks, D-EZ-5) live in preallocated, contiguous arrays
(:class:`~xtra.data.rows.RowStore`, columns as in :mod:`xtra.data.snapshot`):

* frames: one row per frame (``S + T`` per trajectory, :class:`~xtra.data.trajectory.Trajectory`),
  raw ``[F, C, H, W]`` uint8 by default, or JPEG bytes with ``jpeg=True`` (decision 7,
  :mod:`xtra.data.frames`);
* transitions: one row per step (local and ALE action, clipped and raw reward, root value, root
  visits ``[A]``, trajectory id, position in the trajectory, priority);
* trajectories: one row each (first frame, first transition, length, terminated).

Every item has a *global index*: its insertion order since the buffer was created (transition
indices are EZ's "global index" used for priorities and the TD-length rule). Trajectories are
appended whole, so transition ``t`` of trajectory ``tau`` is global ``start[tau] + t`` and its
frames are ``frame_start[tau] + t ..``: every lookup is O(1) arithmetic.

Capacity. ``len(buffer)`` never exceeds ``capacity`` transitions: before adding, the oldest *whole*
trajectories are evicted (FIFO) until the new one fits. Arrays grow by doubling while the buffer
fills; once evicting, the live rows are moved back to the front when the free space runs out,
so memory stays within about 1.5x the live data (untouched pages are never resident). The
Atari100k setting (100k transitions, capacity 1e6) never evicts.

Prioritized replay (spec A6.2). New transitions get the current maximum priority (1.0 when the
buffer is empty); ``P(i) = p_i^alpha / sum_j p_j^alpha``; a batch is drawn without replacement by
successive sampling (:meth:`SumTree.sample_distinct`, as EZ's ``np.random.choice(replace=False)``);
importance weights ``w_i = (N P(i))^-beta / max_j w_j`` over the batch, ``N`` = transitions held.

Checkpoints: :meth:`save` / :meth:`load` write and read a snapshot directory
(:mod:`xtra.data.snapshot`); ``load(..., mmap=True)`` memory-maps the frames, which is how
offline datasets are read. :meth:`state_dict` / :meth:`load_state_dict` give the same content
as a dict of numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xtra.config import ReplayConfig
from xtra.data.frames import EncodedFrames, JpegCodec, RawFrames
from xtra.data.rows import RowStore
from xtra.data.snapshot import (
    BULK_ARRAYS,
    FORMAT_VERSION,
    SHARED_META,
    TRAJECTORY_COLUMNS,
    TREE_LEAF_VALUES,
    latest_name,
    read_snapshot,
    snapshot_meta,
    transition_columns,
    write_snapshot,
)
from xtra.data.sumtree import SumTree
from xtra.data.targets import td_steps_for_age
from xtra.data.trajectory import Trajectory
from xtra.errors import CheckpointError, XtraError

# --------------------------------------------------------------------------- schedules


def beta_at(step: int, *, beta_start: float, beta_end: float, total_steps: int) -> float:
    """Importance-weight exponent, linear from ``beta_start`` at step 0 to ``beta_end`` at
    ``total_steps`` and constant after (spec A6.2: 0.4 -> 1.0 over 120k training steps)."""
    frac = min(max(step, 0) / max(total_steps, 1), 1.0)
    return float(beta_start + frac * (beta_end - beta_start))


# --------------------------------------------------------------------------- batch


@dataclass(frozen=True)
class SampledBatch:
    """What the target makers and the learner need for B sampled transitions.

    Notation: sample b is transition ``t`` of a trajectory of length ``T``; ``S`` frame stack,
    ``K`` unroll steps, ``n`` = ``td_steps`` (the largest TD length), ``U = K + 1`` unrolled
    positions ``t + u`` (u = 0..K), ``A`` legal actions of the game.

    Masks (our convention): ``mask[b, u] = 1`` iff ``t + u < T``, i.e. position ``t + u`` is a
    real state with a stored action, policy, reward and root value. ``mask[:, 0]`` is always 1.
    EZ's mask is ``mask[:, :K]`` (K entries); spec A7 applies ``mask[:, k-1]`` to the k-th unrolled
    step (k = 1..K): the value-prefix, consistency (``o_{t+k}`` exists) and, in EZ HEAD, policy and
    value losses. The state at ``t + u = T`` thus still gets value target 0 (EZ); its policy
    target is zeros (``root_visits``), so policy losses may equally use ``mask[:, k]``.

    Attributes:
        obs: ``[B, S + K, C, H, W]`` uint8 frames ``t .. t+S+K-1`` of the trajectory (the last
            frame repeated past the end, A6.3): ``s_{t+u}`` is ``obs[:, u : u + S]``.
        actions: ``[B, K]`` int64 ALE ids of ``a_t .. a_{t+K-1}``; past the end uniformly random
            ids from the game's legal set (A6.3).
        mask: ``[B, K + 1]`` float32, see above.
        rewards: ``[B, K + n]`` float32 clipped rewards ``r_t .. r_{t+K+n-1}``, 0 past the end.
        td_steps: ``[B]`` int64 TD length ``n`` of each sample (the fixed ``td_steps``, or the
            age rule of A6.4, :func:`~xtra.data.targets.td_steps_for_age`).
        bootstrap_positions: ``[B, K + 1]`` int64 ``t + u + td_steps``: fetch the bootstrap
            states with ``buffer.stacked_obs(np.repeat(traj_ids, K + 1),
            bootstrap_positions.ravel())``.
        bootstrap_valid: ``[B, K + 1]`` float32, 1 iff ``t + u + td_steps < T`` (EZ HEAD: no
            bootstrap from beyond the last action, whether the trajectory terminated or was cut).
        bootstrap_root_values: ``[B, K + 1]`` float32 stored root value at ``t + u + td_steps``
            (0 where not valid), the bootstrap for offline data without a network.
        root_visits: ``[B, K + 1, A]`` float32 stored visit distributions at ``t + u``
            (0 past the end), the policy targets that are not reanalysed.
        root_values: ``[B, K + 1]`` float32 stored root values at ``t + u`` (0 past the end).
        traj_ids: ``[B]`` int64 global trajectory ids.
        positions: ``[B]`` int64 ``t``.
        terminated: ``[B]`` bool, the trajectory really ended (value beyond the end is 0).
        indices: ``[B]`` int64 global transition indices (for :meth:`ReplayBuffer.update_priorities`).
        weights: ``[B]`` float32 importance weights, max 1.
        ages: ``[B]`` int64 transitions added in total minus the global index (EZ's
            ``N_buffer - idx``; the newest transition has age 1).
    """

    obs: np.ndarray
    actions: np.ndarray
    mask: np.ndarray
    rewards: np.ndarray
    td_steps: np.ndarray
    bootstrap_positions: np.ndarray
    bootstrap_valid: np.ndarray
    bootstrap_root_values: np.ndarray
    root_visits: np.ndarray
    root_values: np.ndarray
    traj_ids: np.ndarray
    positions: np.ndarray
    terminated: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    ages: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


# --------------------------------------------------------------------------- replay buffer


class ReplayBuffer:
    """Trajectories of one game in flat arrays, with prioritized sampling of training windows.

    Args:
        frame_shape: ``(C, H, W)`` of one frame.
        frame_stack: S, frames per observation.
        action_ids: the game's legal ALE ids ``[A]`` (local action index -> ALE id, spec B2).
        capacity: most transitions held; older whole trajectories are evicted first (FIFO).
        alpha: priority exponent (``replay.alpha``).
        jpeg: store frames as JPEG (``replay.jpeg``, decision 7); lossless otherwise.
        jpeg_quality: JPEG quality when ``jpeg``.
    """

    def __init__(
        self,
        *,
        frame_shape: Sequence[int],
        frame_stack: int,
        action_ids: Sequence[int],
        capacity: int,
        alpha: float,
        jpeg: bool = False,
        jpeg_quality: int = 95,
    ) -> None:
        self.frame_shape = tuple(int(d) for d in frame_shape)
        if len(self.frame_shape) != 3:
            raise ValueError(f"frame_shape must be (C, H, W), got {frame_shape}")
        self.frame_stack = int(frame_stack)
        self.action_ids = np.asarray(action_ids, dtype=np.int64)
        if self.action_ids.ndim != 1 or self.action_ids.size == 0:
            raise ValueError(f"action_ids must be a non-empty list of ALE ids, got {action_ids}")
        self.capacity = int(capacity)
        self.alpha = float(alpha)
        self.jpeg = bool(jpeg)
        self.jpeg_quality = int(jpeg_quality)
        a = self.num_actions

        def frame_limit() -> int:
            return self.capacity + self.frame_stack * (len(self._trajs) + 1)

        self._trans = RowStore(
            transition_columns(a), rows=min(self.capacity, 1024), soft_limit=lambda: self.capacity
        )
        self._trajs = RowStore(
            TRAJECTORY_COLUMNS, rows=64, soft_limit=lambda: max(len(self._trajs), 64) * 2
        )
        if self.jpeg:
            self._frames: RawFrames | EncodedFrames = EncodedFrames(
                self.frame_shape, JpegCodec(self.jpeg_quality), frame_limit
            )
        else:
            self._frames = RawFrames(self.frame_shape, frame_limit)
        # Leaf g % L of the tree holds p_g^alpha for live transition g (live globals are a
        # contiguous range of length <= L, so the map is one-to-one).
        self._tree = SumTree(min(self.capacity, 64))

    @classmethod
    def from_config(
        cls,
        replay: ReplayConfig,
        *,
        frame_shape: Sequence[int],
        frame_stack: int,
        action_ids: Sequence[int],
    ) -> ReplayBuffer:
        """Build from a :class:`xtra.config.ReplayConfig` (capacity, alpha, jpeg, jpeg_quality)."""
        return cls(
            frame_shape=frame_shape,
            frame_stack=frame_stack,
            action_ids=action_ids,
            capacity=replay.capacity,
            alpha=replay.alpha,
            jpeg=replay.jpeg,
            jpeg_quality=replay.jpeg_quality,
        )

    # ------------------------------------------------------------------ sizes

    def __len__(self) -> int:
        """Transitions held."""
        return len(self._trans)

    @property
    def num_actions(self) -> int:
        """A, the game's legal actions."""
        return int(self.action_ids.size)

    @property
    def num_trajectories(self) -> int:
        return len(self._trajs)

    @property
    def total_added(self) -> int:
        """Transitions added since creation, evicted ones included (the next global index)."""
        return self._trans.total

    @property
    def num_frames(self) -> int:
        """Frames held (``S + T`` per trajectory)."""
        return len(self._frames)

    @property
    def frame_nbytes(self) -> int:
        """Bytes of the frames held (raw pixels, or JPEG bytes plus offsets)."""
        return self._frames.nbytes()

    @property
    def nbytes(self) -> int:
        """Bytes of live data (frames, transitions, trajectories), not counting slack."""
        return self._frames.nbytes() + self._trans.nbytes() + self._trajs.nbytes()

    def trajectory_ids(self) -> np.ndarray:
        """Global ids ``[num_trajectories]`` of the trajectories held, oldest first."""
        return np.arange(self._trajs.first, self._trajs.total, dtype=np.int64)

    # ------------------------------------------------------------------ adding

    def add(self, trajectory: Trajectory, sample_limit: int | None = None) -> int | None:
        """Store a trajectory; returns its global id (None for an empty one, which is dropped).

        Its transitions get the current maximum priority (1.0 in an empty buffer, spec A6.1).
        ``sample_limit``: only the first ``sample_limit`` positions may be sampled; the rest get
        priority 0 and only serve as targets (a self-play segment's overlap with the next one,
        :meth:`TrajectoryBuilder.split`). The oldest whole trajectories are evicted first when
        it would not fit in ``capacity``.
        """
        traj = trajectory.validate(
            frame_stack=self.frame_stack, frame_shape=self.frame_shape, num_actions=self.num_actions
        )
        t = traj.length
        if t == 0:
            return None
        if t > self.capacity:
            raise XtraError(
                f"a trajectory of {t} transitions does not fit in a replay capacity of "
                f"{self.capacity}: raise replay.capacity"
            )
        actions = np.asarray(traj.actions, dtype=np.int64)
        if actions.min() < 0 or actions.max() >= self.num_actions:
            raise ValueError(f"local actions must be in 0..{self.num_actions - 1}")
        if not np.array_equal(self.action_ids[actions], traj.ale_actions):
            raise ValueError("trajectory.ale_actions do not match action_ids[trajectory.actions]")

        if sample_limit is not None and not 0 < sample_limit <= t:
            raise ValueError(f"sample_limit={sample_limit} must be in 1..{t}")

        while len(self) + t > self.capacity:
            self._evict_oldest()
        priority = float(self._trans.live("priority").max()) if len(self) else 1.0
        priorities = np.full(t, priority)
        if sample_limit is not None:
            priorities[sample_limit:] = 0.0
        self._ensure_tree(len(self) + t)

        traj_id = self._trajs.total
        frame_start = self._frames.append(traj.frames)
        trans_start = self._trans.append(
            t,
            action=actions,
            action_ale=traj.ale_actions,
            reward=traj.rewards,
            raw_reward=traj.raw_rewards,
            root_value=traj.root_values,
            root_visits=traj.root_visits,
            traj=traj_id,
            pos=np.arange(t),
            priority=priorities,
        )
        self._trajs.append(
            1,
            frame_start=frame_start,
            trans_start=trans_start,
            length=t,
            terminated=traj.terminated,
        )
        g = np.arange(trans_start, trans_start + t)
        self._tree.update(g % self._tree.num_leaves, priorities**self.alpha)
        return traj_id

    def _evict_oldest(self) -> None:
        r = self._trajs.head
        frame_start = int(self._trajs.arrays["frame_start"][r])
        trans_start = int(self._trajs.arrays["trans_start"][r])
        length = int(self._trajs.arrays["length"][r])
        g = np.arange(trans_start, trans_start + length)
        self._tree.update(g % self._tree.num_leaves, 0.0)
        self._trans.drop_front(length)
        self._trajs.drop_front(1)
        next_frame = (
            int(self._trajs.arrays["frame_start"][self._trajs.head])
            if len(self._trajs)
            else self._frames.total
        )
        self._frames.drop_front(next_frame - frame_start)

    def _ensure_tree(self, size: int) -> None:
        """Grow the tree (before appending) so that ``size`` live transitions map one-to-one."""
        old = self._tree
        if size <= old.num_leaves:
            return
        new = SumTree(max(size, 2 * old.num_leaves))
        g = np.arange(self._trans.first, self._trans.total)
        leaves = np.zeros(new.num_leaves)
        # Carry the exact leaf values over (no recomputation of p^alpha).
        leaves[g % new.num_leaves] = old.get(g % old.num_leaves)
        new.rebuild(leaves)
        self._tree = new

    # ------------------------------------------------------------------ priorities

    def priorities(self, indices: np.ndarray) -> np.ndarray:
        """Raw priorities ``[M]`` of live global transition indices ``[M]``."""
        return self._trans.arrays["priority"][self._rows_of(indices)]

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priorities ``[M]`` (>= 0, e.g. ``|v_0 - z_0| + eps``) of global indices ``[M]``.

        Indices evicted since they were sampled are ignored.
        """
        indices = np.asarray(indices, dtype=np.int64).ravel()
        priorities = np.asarray(priorities, dtype=np.float64).ravel()
        if indices.shape != priorities.shape:
            raise ValueError(f"{indices.size} indices but {priorities.size} priorities")
        if np.any(priorities < 0) or not np.all(np.isfinite(priorities)):
            raise ValueError("priorities must be finite and >= 0")
        live = (indices >= self._trans.first) & (indices < self._trans.total)
        indices, priorities = indices[live], priorities[live]
        self._trans.arrays["priority"][self._trans.row(indices)] = priorities
        self._tree.update(indices % self._tree.num_leaves, priorities**self.alpha)

    def reset_priorities(self, value: float = 1.0) -> None:
        """Give every transition the same priority (XTRA resets offline data to 1.0, spec B4.2),
        except the target-only ones (priority 0: a self-play piece's overlap, :meth:`add`)."""
        g = np.arange(self._trans.first, self._trans.total)
        self.update_priorities(g, np.where(self.priorities(g) > 0, value, 0.0))

    def probabilities(self, indices: np.ndarray) -> np.ndarray:
        """``P(i) = p_i^alpha / sum_j p_j^alpha`` for live global indices ``[M]`` (one draw)."""
        indices = np.asarray(indices, dtype=np.int64)
        self._rows_of(indices)  # range check
        return self._tree.get(indices % self._tree.num_leaves) / self._tree.total

    def _rows_of(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (
            indices.min() < self._trans.first or indices.max() >= self.total_added
        ):
            raise IndexError(
                f"transition indices must be in {self._trans.first}..{self.total_added - 1}"
            )
        return self._trans.row(indices)

    # ------------------------------------------------------------------ sampling

    def sample_indices(
        self, batch_size: int, *, rng: np.random.Generator, beta: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``batch_size`` distinct global indices by prioritized successive sampling.

        Returns:
            indices ``[B]`` int64 in draw order, and importance weights ``[B]`` float32
            ``w_i = (N P(i))^-beta / max_j w_j`` (EZ normalises by the batch maximum).
        """
        if batch_size > len(self):
            raise XtraError(
                f"cannot sample {batch_size} distinct transitions from a replay holding "
                f"{len(self)}: collect more first (replay.start_transitions >= batch size)"
            )
        leaves = self._tree.sample_distinct(batch_size, rng)
        num_leaves = self._tree.num_leaves
        first = self._trans.first
        indices = first + (leaves - first) % num_leaves
        probs = self._tree.get(leaves) / self._tree.total
        weights = (len(self) * probs) ** (-beta)
        weights /= weights.max()
        return indices.astype(np.int64), weights.astype(np.float32)

    def sample(
        self,
        batch_size: int,
        *,
        unroll_steps: int,
        td_steps: int,
        auto_td_steps: int | None,
        rng: np.random.Generator,
        beta: float,
    ) -> SampledBatch:
        """Draw a prioritized batch of training windows (spec A6.2-A6.4).

        Args:
            batch_size: B.
            unroll_steps: K.
            td_steps: n, the TD length (the largest one with ``auto_td_steps``).
            auto_td_steps: age scale of the TD-length rule (:func:`td_steps_for_age`), or None
                for a fixed ``td_steps``.
            rng: consumed for the indices and the padding actions.
            beta: importance-weight exponent (:func:`beta_at`).
        """
        indices, weights = self.sample_indices(batch_size, rng=rng, beta=beta)
        return self.batch_at(
            indices,
            weights,
            unroll_steps=unroll_steps,
            td_steps=td_steps,
            auto_td_steps=auto_td_steps,
            rng=rng,
        )

    def batch_at(
        self,
        indices: np.ndarray,
        weights: np.ndarray,
        *,
        unroll_steps: int,
        td_steps: int,
        auto_td_steps: int | None,
        rng: np.random.Generator,
    ) -> SampledBatch:
        """The :class:`SampledBatch` of given global transition indices ``[B]`` and weights ``[B]``
        (what :meth:`sample` returns after drawing them)."""
        k, s = int(unroll_steps), self.frame_stack
        indices = np.asarray(indices, dtype=np.int64)
        b = indices.shape[0]
        tr = self._trans.arrays
        rows = self._rows_of(indices)
        traj_ids = tr["traj"][rows]
        t = tr["pos"][rows].astype(np.int64)
        traj_rows = self._trajs.row(traj_ids)
        length = self._trajs.arrays["length"][traj_rows]
        trans_start = self._trajs.arrays["trans_start"][traj_rows]
        terminated = self._trajs.arrays["terminated"][traj_rows]

        def at(positions: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
            # Values of column `name` at trajectory positions [B, X] (clamped), and validity.
            valid = positions < length[:, None]
            g = trans_start[:, None] + np.minimum(positions, length[:, None] - 1)
            return tr[name][self._trans.row(g)], valid

        u = t[:, None] + np.arange(k + 1)  # [B, K+1]
        mask = u < length[:, None]

        obs = self._window(traj_ids, t, s + k)

        ale, valid_a = at(u[:, :k], "action_ale")
        pad = self.action_ids[rng.integers(0, self.num_actions, size=(b, k))]
        actions = np.where(valid_a, ale.astype(np.int64), pad)

        reward, valid_r = at(t[:, None] + np.arange(k + td_steps), "reward")
        rewards = np.where(valid_r, reward, 0.0).astype(np.float32)

        root_values, _ = at(u, "root_value")
        root_values = np.where(mask, root_values, 0.0).astype(np.float32)
        root_visits, _ = at(u, "root_visits")
        root_visits = (root_visits * mask[:, :, None]).astype(np.float32)

        ages = self.total_added - indices
        if auto_td_steps is None:
            td = np.full(b, td_steps, dtype=np.int64)
        else:
            td = td_steps_for_age(ages, td_steps=td_steps, auto_td_steps=auto_td_steps)
        boot_pos = u + td[:, None]
        boot_root, boot_valid = at(boot_pos, "root_value")
        boot_root = np.where(boot_valid, boot_root, 0.0).astype(np.float32)

        return SampledBatch(
            obs=obs,
            actions=actions,
            mask=mask.astype(np.float32),
            rewards=rewards,
            td_steps=td,
            bootstrap_positions=boot_pos,
            bootstrap_valid=boot_valid.astype(np.float32),
            bootstrap_root_values=boot_root,
            root_visits=root_visits,
            root_values=root_values,
            traj_ids=traj_ids.astype(np.int64),
            positions=t,
            terminated=terminated.astype(bool),
            indices=indices,
            weights=np.asarray(weights, dtype=np.float32),
            ages=ages,
        )

    def stacked_obs(self, traj_ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Observations ``[M, S, C, H, W]`` uint8: state ``s_p`` (frames ``p .. p+S-1``) of each
        trajectory ``traj_ids [M]`` at ``positions [M]``, clamped to ``0..T`` (``s_T`` is the
        observation after the last action)."""
        return self._window(
            np.asarray(traj_ids, dtype=np.int64),
            np.asarray(positions, dtype=np.int64),
            self.frame_stack,
        )

    def _window(self, traj_ids: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
        """Frames ``[M, width, C, H, W]`` starting at frame ``position`` of each trajectory,
        repeating the last frame past the end."""
        if traj_ids.size and (
            traj_ids.min() < self._trajs.first or traj_ids.max() >= self._trajs.total
        ):
            raise IndexError(
                f"trajectory ids must be in {self._trajs.first}..{self._trajs.total - 1} "
                "(older ones were evicted)"
            )
        traj_rows = self._trajs.row(traj_ids)
        length = self._trajs.arrays["length"][traj_rows]
        frame_start = self._trajs.arrays["frame_start"][traj_rows]
        last = self.frame_stack + length - 1  # local index of the last frame
        p = np.clip(positions, 0, length)
        local = np.minimum(p[:, None] + np.arange(width), last[:, None])
        return self._frames.get(frame_start[:, None] + local)

    def trajectory(self, traj_id: int) -> Trajectory:
        """The stored trajectory ``traj_id`` (frames decoded), e.g. for export."""
        traj_id = int(traj_id)
        if not self._trajs.first <= traj_id < self._trajs.total:
            raise IndexError(f"trajectory {traj_id} is not held (evicted or never added)")
        r = self._trajs.row(traj_id)
        length = int(self._trajs.arrays["length"][r])
        fs = int(self._trajs.arrays["frame_start"][r])
        rows = self._trans.row(int(self._trajs.arrays["trans_start"][r]))
        sl = slice(rows, rows + length)
        tr = self._trans.arrays
        return Trajectory(
            frames=self._frames.get(np.arange(fs, fs + self.frame_stack + length)),
            actions=tr["action"][sl].astype(np.int64),
            ale_actions=tr["action_ale"][sl].astype(np.int64),
            rewards=tr["reward"][sl].copy(),
            raw_rewards=tr["raw_reward"][sl].copy(),
            root_visits=tr["root_visits"][sl].copy(),
            root_values=tr["root_value"][sl].copy(),
            terminated=bool(self._trajs.arrays["terminated"][r]),
        )

    # ------------------------------------------------------------------ checkpoints

    def _meta(self) -> dict[str, Any]:
        return snapshot_meta(
            frame_shape=list(self.frame_shape),
            frame_stack=self.frame_stack,
            action_ids=self.action_ids.tolist(),
            capacity=self.capacity,
            alpha=self.alpha,
            jpeg=self.jpeg,
            jpeg_quality=self.jpeg_quality,
            transitions_first=self._trans.first,
            trajectories_first=self._trajs.first,
            tree_leaves=self._tree.num_leaves,
            **self._frames.meta(),
        )

    def state_dict(self) -> dict[str, Any]:
        """``{"meta": JSON-able dict, "arrays": {name: array}}`` of the live content, in the
        snapshot format (:func:`~xtra.data.snapshot.snapshot_arrays`).

        The arrays are views into the buffer (no copy of gigabytes of frames): save or copy them
        before the buffer changes. The tree's leaf values are included so that a reloaded buffer
        draws bit-identical samples from the same ``rng``.
        """
        arrays: dict[str, np.ndarray] = {}
        for name, arr in self._trans.state().items():
            arrays[f"transitions.{name}"] = arr
        for name, arr in self._trajs.state().items():
            arrays[f"trajectories.{name}"] = arr
        arrays.update(self._frames.state())
        g = np.arange(self._trans.first, self._trans.total)
        arrays[TREE_LEAF_VALUES] = self._tree.get(g % self._tree.num_leaves)
        return {"meta": self._meta(), "arrays": arrays}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the content by a :meth:`state_dict` (checks that it fits this buffer)."""
        meta, arrays = state["meta"], state["arrays"]
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"replay snapshot format {meta.get('format_version')} is not {FORMAT_VERSION}: "
                "it was written by another xtra version"
            )
        mine = self._meta()
        for key in SHARED_META:
            if meta[key] != mine[key]:
                raise CheckpointError(
                    f"replay snapshot has {key}={meta[key]} but this buffer has {mine[key]}: "
                    "load it into a buffer built for the same game and settings"
                )
        n = len(arrays["transitions.priority"])
        if n > self.capacity:
            raise CheckpointError(
                f"replay snapshot holds {n} transitions, more than capacity {self.capacity}"
            )
        self._trans.load(
            {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("transitions.")},
            first=meta["transitions_first"],
        )
        self._trajs.load(
            {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("trajectories.")},
            first=meta["trajectories_first"],
        )
        self._frames.load(arrays, meta)
        self._tree = SumTree(max(int(meta["tree_leaves"]), 1))
        if n > self._tree.num_leaves:
            raise CheckpointError(
                "replay snapshot is inconsistent: more transitions than tree leaves"
            )
        g = np.arange(self._trans.first, self._trans.total)
        leaves = np.zeros(self._tree.num_leaves)
        if float(meta["alpha"]) == self.alpha:
            leaves[g % self._tree.num_leaves] = arrays[TREE_LEAF_VALUES]
        else:
            leaves[g % self._tree.num_leaves] = self._trans.live("priority") ** self.alpha
        self._tree.rebuild(leaves)

    def save(self, path: str | Path) -> Path:
        """Write a snapshot under directory ``path`` (:func:`~xtra.data.snapshot.write_snapshot`:
        atomic, older snapshots removed); returns the snapshot's directory."""
        state = self.state_dict()
        return write_snapshot(Path(path), state["meta"], state["arrays"])

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        mmap: bool = False,
        capacity: int | None = None,
        alpha: float | None = None,
    ) -> ReplayBuffer:
        """Read the snapshot that ``path/LATEST`` names (see :meth:`save`).

        ``mmap=True`` memory-maps the frames read-only (offline datasets larger than memory);
        the small per-transition arrays are always read into memory so priorities stay writable.
        ``capacity`` and ``alpha`` default to the saved ones.
        """
        path = Path(path)
        latest = latest_name(path)
        if latest is None:
            raise CheckpointError(f"no replay snapshot in {str(path)!r}: LATEST is missing")
        snap = path / latest
        try:
            meta, arrays = read_snapshot(snap, mmap=BULK_ARRAYS if mmap else False)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"replay snapshot {str(snap)!r} cannot be read: {e}") from None
        buffer = cls(
            frame_shape=meta["frame_shape"],
            frame_stack=meta["frame_stack"],
            action_ids=meta["action_ids"],
            capacity=meta["capacity"] if capacity is None else capacity,
            alpha=meta["alpha"] if alpha is None else alpha,
            jpeg=meta["jpeg"],
            jpeg_quality=meta["jpeg_quality"],
        )
        buffer.load_state_dict({"meta": meta, "arrays": arrays})
        return buffer
