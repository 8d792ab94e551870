"""Data-side training targets: TD length, n-step values, value prefixes (spec A6.4, B4.2).

Pure vectorised functions over a sampled batch; the network values they need (bootstraps) are
passed in, so the same functions serve reanalysis with the target network, a frozen teacher
(distillation) and stored root values (offline data). Tests compare each with a plain loop.

Shapes (style.md): ``B`` batch, ``K`` unroll steps; ``U = K + 1`` unrolled positions
``t + u, u = 0..K``; ``n`` the largest TD length; ``T`` the trajectory length.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def td_steps_for_age(age: np.ndarray | int, *, td_steps: int, auto_td_steps: int) -> np.ndarray:
    """TD length per sample, shortened for old data (spec A6.4, EZ off-policy correction).

    ``n = clip(td_steps - floor(age / auto_td_steps), 1, td_steps)`` with ``age`` = transitions
    in the buffer minus the sample's global index (:attr:`SampledBatch.ages`). Paper numbers
    (5, 30000): age 0..29999 -> 5, 30000 -> 4, 119999 -> 2, >= 120000 -> 1.

    Args:
        age: ``[B]`` (or a scalar) non-negative ages.
    Returns:
        ``[B]`` int64 TD lengths in ``1..td_steps``.
    """
    age = np.asarray(age, dtype=np.int64)
    if np.any(age < 0):
        raise ValueError("ages must be >= 0")
    return np.clip(td_steps - age // auto_td_steps, 1, td_steps).astype(np.int64)


def n_step_value_targets(
    rewards: np.ndarray,
    bootstrap_values: np.ndarray,
    td: np.ndarray,
    mask: np.ndarray,
    bootstrap_valid: np.ndarray,
    *,
    discount: float,
) -> np.ndarray:
    """n-step value targets at the unrolled positions (spec A6.4, decision 2).

    ``z[b, u] = sum_{i < n_b} discount^i r[b, u + i] + discount^{n_b} v[b, u] valid[b, u]``,
    and ``z[b, u] = 0`` where ``mask[b, u] = 0`` (``t + u >= T``). The reward sum simply runs into
    the zeros past the trajectory end, as EZ's does.

    Args:
        rewards: ``[B, K + n]`` clipped rewards ``r_{t}..r_{t+K+n-1}``, 0 past the end
            (:attr:`SampledBatch.rewards`); at least ``K + max(td)`` columns.
        bootstrap_values: ``[B, U]`` value of the state ``s_{t+u+n_b}`` (target network,
            teacher, or stored root value); ignored where ``bootstrap_valid`` is 0.
        td: ``[B]`` int TD length ``n_b >= 1`` per sample (:func:`td_steps_for_age`).
        mask: ``[B, U]`` 1 where ``t + u < T`` (:attr:`SampledBatch.mask`).
        bootstrap_valid: ``[B, U]`` 1 where the bootstrap state is inside the data
            (:attr:`SampledBatch.bootstrap_valid`).
        discount: gamma per agent step.
    Returns:
        ``[B, U]`` float32.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(bootstrap_values, dtype=np.float64)
    td = np.asarray(td, dtype=np.int64)
    b, u = values.shape
    n_max = int(td.max())
    if td.shape != (b,) or td.min() < 1:
        raise ValueError(f"td must be [B] = [{b}] with values >= 1, got {td.shape}")
    if rewards.shape[0] != b or rewards.shape[1] < u - 1 + n_max:
        raise ValueError(f"rewards {rewards.shape} need at least {u - 1 + n_max} columns")
    # windows[b, u, i] = r[b, u + i]
    windows = sliding_window_view(rewards[:, : u - 1 + n_max], n_max, axis=1)
    i = np.arange(n_max)
    weights = np.where(i[None, :] < td[:, None], discount ** i[None, :], 0.0)  # [B, n]
    z = np.einsum("bui,bi->bu", windows, weights)
    z += (discount ** td.astype(np.float64))[:, None] * values * np.asarray(bootstrap_valid)
    return (z * np.asarray(mask)).astype(np.float32)


def value_prefix_targets(rewards: np.ndarray, mask: np.ndarray, *, lstm_horizon: int) -> np.ndarray:
    """Value-prefix targets for the K dynamics steps (spec A6.4, A7 note; EZ HEAD).

    Target of the k-th dynamics step (k = 1..K), stored at column ``k - 1``: the undiscounted
    sum ``r_{t+j}`` over ``j = h..k-1`` where ``h = lstm_horizon * floor((k-1) / lstm_horizon)``
    is the last LSTM reset, counting only real steps (``mask[j] = 1``), so the sum stops growing
    past the trajectory end.

    Args:
        rewards: ``[B, >= K]`` clipped rewards ``r_t, r_{t+1}, ...``.
        mask: ``[B, K + 1]`` 1 where ``t + u < T``.
        lstm_horizon: positions between LSTM resets (``search.lstm_horizon``, 5).
    Returns:
        ``[B, K]`` float32.
    """
    mask = np.asarray(mask, dtype=np.float64)
    k = mask.shape[1] - 1
    r = np.asarray(rewards, dtype=np.float64)[:, :k] * mask[:, :k]
    # Sum within each horizon segment: the cumulative sum minus its value before the segment.
    c = np.cumsum(r, axis=1)
    seg_start = (np.arange(k) // lstm_horizon) * lstm_horizon
    before = np.where(seg_start > 0, c[:, np.maximum(seg_start - 1, 0)], 0.0)
    return (c - before).astype(np.float32)


def xtra_as_coded_value_targets(
    rewards: np.ndarray, root_values: np.ndarray, mask: np.ndarray, *, discount: float, n: int
) -> np.ndarray:
    """XTRA's offline value target as coded (D-XT-4; switch ``transfer.offline_value_target``).

    ``z[b, u] = root[b, u] + sum_{i < n} discount^i r[b, u + i]`` where ``t + u < T``, else 0: no
    ``discount^n`` on the stored root value and no shift to ``t + u + n`` (reference n = 5).

    Args:
        rewards: ``[B, K + n]`` clipped rewards, 0 past the end.
        root_values: ``[B, U]`` stored root values at ``t + u`` (:attr:`SampledBatch.root_values`).
        mask: ``[B, U]``.
    Returns:
        ``[B, U]`` float32.
    """
    b, u = root_values.shape
    rewards = np.asarray(rewards, dtype=np.float64)
    windows = sliding_window_view(rewards[:, : u - 1 + n], n, axis=1)
    z = root_values + windows @ (discount ** np.arange(n, dtype=np.float64))
    return (z * np.asarray(mask)).astype(np.float32)
