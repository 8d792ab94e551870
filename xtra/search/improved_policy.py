"""The completed-Q improved policy of a search's root: a policy target and an acting policy.

With few simulations, normalised visit counts are a coarse policy target: 8 visits over 4-6
actions put a multiple of 1/8 on each action whatever the Q-values say, and unvisited actions get
0. Danihelka et al. (ICLR 2022, "Policy improvement by planning with Gumbel"; Gumbel MuZero,
EfficientZero V2) train toward the *completed-Q* improved policy instead:

    pi'(a) = softmax(logits(a) + sigma(completedQ(a)))

where completedQ(a) is the search's Q-value of a visited action and, for an unvisited one, the
mixed value v_mix (the network's root value blended with the prior-weighted Q of the visited
actions); sigma rescales Q to [0, 1] over the root's legal actions and multiplies it by
(c_visit + max_b N(b)) * c_scale. Shapes: N roots, A action slots.

Reanalysis trains toward it (``targets.policy_target=completed_q``); self-play can act by
drawing from it (``search.action_selection=improved_policy``), Gumbel MuZero's action choice
without its sequential-halving search: drawing from pi' is the Gumbel-max argmax of
g + logits + sigma(completedQ) over all legal actions.
"""

from __future__ import annotations

import numpy as np

C_VISIT = 50.0
"""sigma's visit offset (Danihelka et al. 2022, App. D; mctx's default)."""

C_SCALE = 0.1
"""sigma's scale (Danihelka et al. 2022, App. D; mctx's default)."""


def _softmax(logits: np.ndarray, legal: np.ndarray) -> np.ndarray:
    x = np.where(legal, logits, -np.inf)
    x = x - x.max(axis=1, keepdims=True)
    e = np.where(legal, np.exp(x), 0.0)
    return e / e.sum(axis=1, keepdims=True)


def mixed_value(
    root_value: np.ndarray, prior: np.ndarray, visits: np.ndarray, child_q: np.ndarray
) -> np.ndarray:
    """v_mix [N] = (v + sum_b N(b) * sum_{visited} pi(a) q(a) / sum_{visited} pi(a)) /
    (1 + sum_b N(b)); the network value v alone when nothing was visited."""
    visited = visits > 0
    total = visits.sum(axis=1)
    weight = np.where(visited, prior, 0.0).sum(axis=1)
    weighted_q = np.where(visited, prior * child_q, 0.0).sum(axis=1) / np.maximum(weight, 1e-30)
    return np.where(total > 0, (root_value + total * weighted_q) / (1.0 + total), root_value)


def completed_q_policy(
    prior_logits: np.ndarray,
    visits: np.ndarray,
    child_q: np.ndarray,
    root_value: np.ndarray,
    legal: np.ndarray,
    *,
    c_visit: float = C_VISIT,
    c_scale: float = C_SCALE,
) -> np.ndarray:
    """The completed-Q improved policy [N, A] (0 on illegal slots).

    prior_logits [N, A]: the network's policy logits over the root's slots; visits [N, A]: the
    search's visit counts; child_q [N, A]: Q of each visited child (ignored where unvisited);
    root_value [N]: the network's value of the root; legal [N, A] bool."""
    prior = _softmax(prior_logits.astype(np.float64), legal)
    v_mix = mixed_value(root_value.astype(np.float64), prior, visits, child_q.astype(np.float64))
    completed = np.where(visits > 0, child_q, v_mix[:, None])
    lo = np.where(legal, completed, np.inf).min(axis=1, keepdims=True)
    hi = np.where(legal, completed, -np.inf).max(axis=1, keepdims=True)
    scaled = (completed - lo) / np.maximum(hi - lo, 1e-8)
    sigma = (c_visit + visits.max(axis=1, keepdims=True)) * c_scale * scaled
    return _softmax(prior_logits + sigma, legal)
