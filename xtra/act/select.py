"""Turning root visit counts into actions (spec A6.1, A9; fact 9)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def select_action(
    visit_counts: np.ndarray,
    temperature: float,
    rng: np.random.Generator,
    deterministic: bool,
    tie_scores: np.ndarray | None = None,
) -> np.ndarray:
    """Pick one action slot per root from its visit counts (EZ ``select_action``).

    Args:
        visit_counts: [B, A] non-negative counts (each row with a positive entry).
        temperature: T > 0; sample a with probability proportional to N_a^(1/T). T = 0 means
            argmax (as ``deterministic``).
        rng: consumed: one uniform number per root, only when sampling.
        deterministic: argmax of the counts, lowest slot on ties (evaluation, spec A9).
        tie_scores: optional [B, A]; with ``deterministic``, ties of the counts go to the slot
            with the highest score (then the lowest slot). With few simulations the counts tie
            often, and "lowest slot" then means "action 0" (NOOP on Atari).

    Returns:
        [B] int64 slots.
    """
    counts = np.asarray(visit_counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"visit_counts must be [B, A], got shape {counts.shape}")
    if deterministic or temperature == 0:
        if tie_scores is None:
            return np.argmax(counts, axis=1).astype(np.int64)
        scores = np.asarray(tie_scores, dtype=np.float64)
        if scores.shape != counts.shape:
            raise ValueError(f"tie_scores has shape {scores.shape}, expected {counts.shape}")
        is_top = counts == counts.max(axis=1, keepdims=True)
        return np.argmax(np.where(is_top, scores, -np.inf), axis=1).astype(np.int64)
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0")
    top = counts.max(axis=1, keepdims=True)
    if (top <= 0).any():
        raise ValueError("every row of visit_counts needs a positive count")
    # Scaled by the row maximum first, so that small temperatures do not overflow.
    weights = (counts / top) ** (1.0 / temperature)
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]  # the last entry becomes exactly 1
    u = rng.random((counts.shape[0], 1))
    # First slot whose cdf exceeds u: zero-weight slots (cdf equal to their left neighbour's)
    # can never be picked.
    return (cdf <= u).sum(axis=1).astype(np.int64)


def temperature_at(
    step: float, temperatures: Sequence[float], temperature_steps: Sequence[float]
) -> float:
    """Visit-count temperature at a point of the run (spec A6.1): ``temperatures[i]`` where ``i``
    is how many of ``temperature_steps`` ``step`` has reached (EZ: 1.0 / 0.5 / 0.25 at training
    steps 50k, 75k). ``step`` and the thresholds may also be fractions of the run."""
    if len(temperatures) != len(temperature_steps) + 1:
        raise ValueError("give one more temperature than temperature_steps")
    return float(temperatures[sum(step >= s for s in temperature_steps)])


def draw_from_policy(
    policy: np.ndarray, rng: np.random.Generator, deterministic: bool = False
) -> np.ndarray:
    """One slot per root drawn from ``policy`` [B, A] (rows summing to 1, e.g. the completed-Q
    improved policy of :mod:`xtra.search.improved_policy`); its argmax when ``deterministic``.
    Consumes one uniform number per root, as :func:`select_action` does. Returns [B] int64."""
    p = np.asarray(policy, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"policy must be [B, A], got shape {p.shape}")
    if deterministic:
        return np.argmax(p, axis=1).astype(np.int64)
    cdf = np.cumsum(p, axis=1)
    u = rng.random(p.shape[0]) * cdf[:, -1]
    # the first slot whose cumulative mass passes u: a zero-probability slot is never drawn
    return np.minimum((cdf <= u[:, None]).sum(axis=1), p.shape[1] - 1).astype(np.int64)
