"""Actions across games (spec B2): each game's legal actions as ALE ids 0..17, one 18-way head.

A game's *local* actions are its minimal action set, indexed 0..A-1 (what its environment takes);
their *ALE ids* index the shared policy head and the dynamics' action input. The search works
in *slots* (a root's legal ids in order, padded to a common width). These four functions are the
only places that convert between the three.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xtra.errors import XtraError

NUM_ALE_ACTIONS = 18


def local_to_ale(local: np.ndarray, legal_actions: Sequence[int]) -> np.ndarray:
    """Local action indices of a game (its minimal action set) -> ALE ids 0..17."""
    return np.asarray(legal_actions, dtype=np.int64)[np.asarray(local, dtype=np.int64)]


def ale_to_local(ale: np.ndarray, legal_actions: Sequence[int]) -> np.ndarray:
    """ALE ids -> local indices of the game; XtraError for an id the game does not have."""
    legal = np.asarray(legal_actions, dtype=np.int64)
    table = np.full(NUM_ALE_ACTIONS, -1, dtype=np.int64)
    table[legal] = np.arange(len(legal))
    out = table[np.asarray(ale, dtype=np.int64)]
    if np.any(out < 0):
        bad = sorted(set(np.asarray(ale)[out < 0].tolist()))
        raise XtraError(f"ALE ids {bad} are not legal actions of this game ({legal.tolist()})")
    return out


def legal_slots(legal_actions: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """ALE ids [A] (one game) or [N, A] padded with -1 -> (action_ids [N, A] int64, legal mask [N, A])."""
    legal_actions = np.asarray(legal_actions, dtype=np.int64)
    if legal_actions.ndim == 1:
        legal_actions = np.broadcast_to(legal_actions, (n, legal_actions.shape[0]))
    mask = legal_actions >= 0
    return np.where(mask, legal_actions, 0), mask


def scatter_policy(policy: np.ndarray, legal_actions: np.ndarray, size: int) -> np.ndarray:
    """Local visit distributions [..., A] -> [..., size] over ALE ids (zeros on illegal ids)."""
    out = np.zeros((*policy.shape[:-1], size), dtype=np.float32)
    out[..., np.asarray(legal_actions)] = policy
    return out
