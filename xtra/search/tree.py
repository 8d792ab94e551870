"""The search tree as preallocated arrays, and the compiled MCTS steps that update it (spec A5).

One :class:`Tree` holds ``B`` independent trees (one per root) of at most ``N = S + 1`` nodes
(``S`` simulations: node ``s + 1`` is the node expanded by simulation ``s``, the root is node
``ROOT``). Per-node arrays are ``node_*`` ``[B, N]``, per-edge arrays ``children_*`` ``[B, N, A]``
where ``A`` is the number of action *slots* (the largest legal set in the batch); slot ``a`` of
root ``b`` exists only where ``legal_mask[b, a]`` and is the same legal set at every depth.

The three steps are numba kernels that update the arrays in place, each over all roots at once
(``prange`` over roots): :func:`prepare_roots`, :func:`simulate` (selection) and
:func:`expand_and_backward` (expansion, backup and the min-max rescan). Everything is float64;
the only randomness is the tie-break, which consumes a ``uint64`` key per (simulation, root)
through :func:`splitmix64`, so that a plain-Python reference can replay it exactly.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from numba import prange

ROOT = 0
UNVISITED = -1
TIE_EPSILON = 1e-6
"""Scores within this of the running best are ties (EZ ``cselect_child``)."""

# Rows of Tree.selection, written by simulate() for the driver.
SEL_PARENT, SEL_SLOT, SEL_DEPTH, SEL_POOL_ROW, SEL_ACTION_ID, SEL_RESET = range(6)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


class Tree(NamedTuple):
    """State of ``B`` searches, ``N`` nodes each, ``A`` action slots; updated in place by kernels.

    An immutable record of arrays (a ``NamedTuple``, so that the numba kernels take it as one
    argument); the arrays themselves are mutated in place by the kernels.

    Attributes:
        node_visits: [B, N] int32, visit count N (the root starts at 1, spec A5 / D-EZ-3).
        node_value_sum: [B, N] float64, W, sum of backed-up returns.
        node_value_prefix: [B, N] float64, VP predicted when the node was expanded (root: 0).
        node_is_reset: [B, N] bool, the node's LSTM state was zeroed (depth % lstm_horizon == 0);
            its children's rewards are their VP alone.
        node_depth: [B, N] int32, edges from the root.
        parents: [B, N] int32, parent node (UNVISITED for the root).
        action_from_parent: [B, N] int32, slot of the edge parent -> node.
        children_index: [B, N, A] int32, child node of each edge, UNVISITED if not expanded.
        children_prior: [B, N, A] float64, prior P of each edge (0 on illegal slots).
        legal_mask: [B, A] bool, legal slots of each root (the same at every depth).
        action_ids: [B, A] int64, the model's action id of each slot (0 on illegal slots).
        minmax: [B, 2] float64, (min, max) of Q over expanded non-root nodes (spec A5 step 5).
        selection: [6, B] int64, the last :func:`simulate`'s output, rows ``SEL_*``: parent node,
            action slot, depth of the new node, parent's row in the node-major latent pool
            (``node * B + b``), action id, and 1 where the new node's LSTM state must be zeroed.
        scratch_q: [B, A] float64, kernel scratch: Q of the current node's visited children.
        scratch_index: [B, max(A, N)] int32, kernel scratch: tie candidates; DFS stack (D-EZ-1).
    """

    node_visits: np.ndarray
    node_value_sum: np.ndarray
    node_value_prefix: np.ndarray
    node_is_reset: np.ndarray
    node_depth: np.ndarray
    parents: np.ndarray
    action_from_parent: np.ndarray
    children_index: np.ndarray
    children_prior: np.ndarray
    legal_mask: np.ndarray
    action_ids: np.ndarray
    minmax: np.ndarray
    selection: np.ndarray
    scratch_q: np.ndarray
    scratch_index: np.ndarray

    ROOT = ROOT
    UNVISITED = UNVISITED

    @property
    def batch_size(self) -> int:
        return self.node_visits.shape[0]

    @property
    def num_nodes(self) -> int:
        return self.node_visits.shape[1]

    @property
    def num_actions(self) -> int:
        return self.children_index.shape[2]

    def root_visit_counts(self) -> np.ndarray:
        """[B, A] int64 visits of the root's children (0 on unvisited and illegal slots)."""
        child = self.children_index[:, ROOT, :]
        rows = np.arange(self.batch_size)[:, None]
        visits = self.node_visits[rows, np.maximum(child, 0)].astype(np.int64)
        return np.where(child == UNVISITED, 0, visits)

    def root_values(self) -> np.ndarray:
        """[B] float64 root value W/N (= sum of the simulations' returns / (S + 1), D-EZ-3)."""
        return self.node_value_sum[:, ROOT] / self.node_visits[:, ROOT]


def make_tree(legal_mask: np.ndarray, action_ids: np.ndarray, num_simulations: int) -> Tree:
    """Allocate a tree for ``B`` roots and ``num_simulations`` simulations.

    Args:
        legal_mask: [B, A] bool, legal action slots per root (legal slots are True).
        action_ids: [B, A] int, the model's action id of each slot (ignored on illegal slots).
        num_simulations: S; the tree gets N = S + 1 nodes per root.
    """
    b, a = legal_mask.shape
    n = num_simulations + 1
    legal = np.ascontiguousarray(legal_mask, dtype=np.bool_)
    return Tree(
        node_visits=np.zeros((b, n), np.int32),
        node_value_sum=np.zeros((b, n), np.float64),
        node_value_prefix=np.zeros((b, n), np.float64),
        node_is_reset=np.zeros((b, n), np.bool_),
        node_depth=np.zeros((b, n), np.int32),
        parents=np.full((b, n), UNVISITED, np.int32),
        action_from_parent=np.full((b, n), UNVISITED, np.int32),
        # Rows are initialised when their node is expanded; only the root's is read before that.
        children_index=np.empty((b, n, a), np.int32),
        children_prior=np.empty((b, n, a), np.float64),
        legal_mask=legal,
        action_ids=np.ascontiguousarray(np.where(legal, action_ids, 0), dtype=np.int64),
        minmax=np.empty((b, 2), np.float64),
        selection=np.zeros((6, b), np.int64),
        scratch_q=np.zeros((b, a), np.float64),
        scratch_index=np.zeros((b, max(a, n)), np.int32),
    )


# --------------------------------------------------------------------------- equations


@numba.njit(cache=True, inline="always")
def splitmix64(seed: np.uint64, counter: int) -> np.uint64:
    """The ``counter``-th output (from 0) of a SplitMix64 stream started at ``seed``.

    Tie-break randomness: simulation ``s`` of root ``b`` uses ``splitmix64(keys[s, b], t)`` at
    tree level ``t``, so that the batched kernels and the one-root reference draw the same numbers.
    """
    z = seed + np.uint64(counter + 1) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def puct_coefficient(children_visits: int, c1: float, c2: float) -> float:
    """pUCT's visit-dependent factor ``log((n + c2 + 1) / c2) + c1`` (spec A5; EZ ``cucb_score``),
    with ``n`` = the parent's visits minus one = the sum of its children's visits (fact 6)."""
    return math.log((children_visits + c2 + 1.0) / c2) + c1


@numba.njit(cache=True, inline="always")
def puct_prior_score(prior: float, child_visits: int, pb_c: float, sqrt_n: float) -> float:
    """pUCT exploration term ``P * pb_c * sqrt(n) / (1 + N_child)`` (spec A5; MuZero App. B).

    ``pb_c`` from :func:`puct_coefficient` and ``sqrt_n = sqrt(n)`` are per parent node; the
    product is evaluated in EZ's order, ``(pb_c * (sqrt(n) / (N_child + 1))) * P``.
    """
    return (pb_c * (sqrt_n / (child_visits + 1.0))) * prior


@numba.njit(cache=True, inline="always")
def normalized_q(q: float, qmin: float, qmax: float, value_delta_max: float) -> float:
    """Min-max normalised value, clipped to [0, 1] (spec A5; EZ ``CMinMaxStats::normalize``).

    ``(q - min) / max(max - min, value_delta_max)`` when ``max > min``, else ``q`` itself; an
    empty statistic (min = +inf, max = -inf) also returns ``q``. Then clipped to [0, 1].
    """
    delta = qmax - qmin
    if delta > 0.0:
        if delta < value_delta_max:
            q = (q - qmin) / value_delta_max
        else:
            q = (q - qmin) / delta
    if q < 0.0:
        return 0.0
    if q > 1.0:
        return 1.0
    return q


@numba.njit(cache=True, inline="always")
def edge_reward(vp_child: float, vp_parent: float, parent_is_reset: bool) -> float:
    """Reward of an edge from value prefixes: VP_child - VP_parent, or VP_child after a reset."""
    if parent_is_reset:
        return vp_child
    return vp_child - vp_parent


@numba.njit(cache=True, inline="always")
def _slot_softmax(
    logits: np.ndarray, offset: int, ids: np.ndarray, legal: np.ndarray, out: np.ndarray
) -> None:
    """out[a] = softmax over the legal slots a of logits[offset + ids[a]] (numerically stable);
    0 on illegal slots. ``logits`` is one row of policy-head outputs ([offset + P])."""
    m = -np.inf
    for a in range(legal.shape[0]):
        if legal[a] and logits[offset + ids[a]] > m:
            m = logits[offset + ids[a]]
    total = 0.0
    for a in range(legal.shape[0]):
        if legal[a]:
            e = math.exp(logits[offset + ids[a]] - m)
            out[a] = e
            total += e
        else:
            out[a] = 0.0
    for a in range(legal.shape[0]):
        out[a] /= total


# --------------------------------------------------------------------------- root preparation


@numba.njit(cache=True)
def _prepare_root(tree, b, root_logits, noise, exploration_fraction, add_noise):
    tree.node_visits[b, ROOT] = 1  # D-EZ-3: the root starts with N = 1, W = 0
    tree.node_value_sum[b, ROOT] = 0.0
    tree.node_value_prefix[b, ROOT] = 0.0
    tree.node_is_reset[b, ROOT] = False
    tree.node_depth[b, ROOT] = 0
    tree.children_index[b, ROOT, :] = UNVISITED
    prior = tree.children_prior[b, ROOT]
    _slot_softmax(root_logits[b], 0, tree.action_ids[b], tree.legal_mask[b], prior)
    if add_noise:
        for a in range(prior.shape[0]):
            if tree.legal_mask[b, a]:
                prior[a] = (
                    prior[a] * (1.0 - exploration_fraction) + noise[b, a] * exploration_fraction
                )
    tree.minmax[b, 0] = np.inf  # empty statistic: normalized_q returns q unchanged
    tree.minmax[b, 1] = -np.inf


# The prange loops call their per-root bodies as separate (not inlined) functions: numba 0.68
# silently drops writes made through a NamedTuple's arrays when they are inlined into a prange
# body (tests/test_search_reference.py checks parallel == serial).
@numba.njit(cache=True, parallel=True)
def _prepare_roots(tree, root_logits, noise, exploration_fraction, add_noise):
    for b in prange(tree.node_visits.shape[0]):
        _prepare_root(tree, b, root_logits, noise, exploration_fraction, add_noise)


def prepare_roots(
    tree: Tree,
    root_logits: np.ndarray,
    noise: np.ndarray | None,
    exploration_fraction: float,
) -> None:
    """Expand every root: prior = softmax of its legal logits, mixed with noise (spec A5).

    Args:
        tree: the tree to reset; its roots get N = 1, W = 0, VP = 0.
        root_logits: [B, P] policy logits of the roots over the whole policy head (slot a of
            root b reads ``root_logits[b, tree.action_ids[b, a]]``).
        noise: [B, A] Dirichlet sample over each root's legal slots, or None for no noise:
            ``P = (1 - exploration_fraction) * P + exploration_fraction * noise``.
        exploration_fraction: weight of the noise.
    """
    add_noise = noise is not None
    _prepare_roots(
        tree,
        np.ascontiguousarray(root_logits, dtype=np.float64),
        np.ascontiguousarray(noise if add_noise else np.zeros((1, 1)), dtype=np.float64),
        float(exploration_fraction),
        add_noise,
    )


# --------------------------------------------------------------------------- selection


@numba.njit(cache=True)
def _select_leaf(
    tree, b, tie_key, tie_random, c1, c2, discount, value_delta_max, lstm_horizon, parent_q
):
    """Walk root ``b`` down by pUCT to an unexpanded edge (EZ ``cbatch_traverse``, spec A5
    step 1), write the result to ``tree.selection[:, b]`` and return the last node's mean Q."""
    legal = tree.legal_mask[b]
    visits = tree.node_visits[b]
    value_sum = tree.node_value_sum[b]
    value_prefix = tree.node_value_prefix[b]
    q_buf = tree.scratch_q[b]
    ties = tree.scratch_index[b]
    qmin = tree.minmax[b, 0]
    qmax = tree.minmax[b, 1]
    node = ROOT
    depth = 0
    while True:
        children = tree.children_index[b, node]
        prior = tree.children_prior[b, node]
        # Mean Q of the node (EZ get_mean_q): the value score of its unvisited children.
        vp_node = value_prefix[node]
        reset = tree.node_is_reset[b, node]
        total_q = 0.0
        n_visited = 0
        for a in range(legal.shape[0]):
            child = children[a]
            if legal[a] and child != UNVISITED:  # expanded <=> visited
                q = edge_reward(value_prefix[child], vp_node, reset) + discount * (
                    value_sum[child] / visits[child]
                )
                q_buf[a] = q
                total_q += q
                n_visited += 1
        if node == ROOT and n_visited > 0:
            mean_q = total_q / n_visited
        else:
            # Below the root the parent's mean Q counts as one more sample; at an unvisited root
            # `parent_q` is 0 (D-EZ-2) or, faithfully, the previous root's last mean Q.
            mean_q = (parent_q + total_q) / (n_visited + 1)
        parent_q = mean_q

        # pUCT; EZ's running-best tie rule: a strictly better score restarts the candidate
        # list, a score within TIE_EPSILON of the running best joins it.
        n = visits[node] - 1
        pb_c = puct_coefficient(n, c1, c2)
        sqrt_n = math.sqrt(n)
        best = -np.inf
        n_ties = 0
        for a in range(legal.shape[0]):
            if legal[a]:
                child = children[a]
                if child == UNVISITED:
                    score = puct_prior_score(prior[a], 0, pb_c, sqrt_n) + normalized_q(
                        mean_q, qmin, qmax, value_delta_max
                    )
                else:
                    score = puct_prior_score(prior[a], visits[child], pb_c, sqrt_n) + (
                        normalized_q(q_buf[a], qmin, qmax, value_delta_max)
                    )
                if score > best:
                    best = score
                    ties[0] = a
                    n_ties = 1
                elif score >= best - TIE_EPSILON:
                    ties[n_ties] = a
                    n_ties += 1
        pick = 0
        if tie_random and n_ties > 1:
            pick = np.int64(splitmix64(tie_key, depth) % np.uint64(n_ties))
        slot = ties[pick]
        depth += 1
        if children[slot] == UNVISITED:
            break
        node = children[slot]

    sel = tree.selection
    sel[SEL_PARENT, b] = node
    sel[SEL_SLOT, b] = slot
    sel[SEL_DEPTH, b] = depth
    sel[SEL_POOL_ROW, b] = node * tree.node_visits.shape[0] + b
    sel[SEL_ACTION_ID, b] = tree.action_ids[b, slot]
    # Spec A5 step 3: a new node at depth d with d % horizon == 0 gets a zeroed LSTM state.
    sel[SEL_RESET, b] = 1 if depth % lstm_horizon == 0 else 0
    return parent_q


@numba.njit(cache=True, parallel=True)
def _simulate_parallel(tree, tie_keys, tie_random, c1, c2, discount, value_delta_max, horizon):
    for b in prange(tree.node_visits.shape[0]):
        # D-EZ-2: every root starts from parent_q = 0.
        _select_leaf(
            tree, b, tie_keys[b], tie_random, c1, c2, discount, value_delta_max, horizon, 0.0
        )


@numba.njit(cache=True)
def _simulate_serial(
    tree, tie_keys, tie_random, c1, c2, discount, value_delta_max, horizon, parent_q_leak
):
    parent_q = 0.0
    for b in range(tree.node_visits.shape[0]):
        # D-EZ-2 fixed: every root starts from parent_q = 0. Faithful: one `parent_q` runs
        # through the roots in batch order, so a root with no visited child inherits the
        # previous root's last mean Q.
        last = _select_leaf(
            tree,
            b,
            tie_keys[b],
            tie_random,
            c1,
            c2,
            discount,
            value_delta_max,
            horizon,
            parent_q if parent_q_leak else 0.0,
        )
        parent_q = last


def simulate(
    tree: Tree,
    tie_keys: np.ndarray,
    *,
    c1: float,
    c2: float,
    discount: float,
    value_delta_max: float,
    lstm_horizon: int,
    tie_random: bool,
    faithful_parent_q_leak: bool,
    parallel: bool,
) -> np.ndarray:
    """Selection for every root: follow pUCT from the root to an unexpanded edge (spec A5 step 1).

    Args:
        tree: the tree (read; its scratch arrays and ``selection`` are written).
        tie_keys: [B] uint64, this simulation's tie-break keys (read only if ``tie_random``).
        c1, c2: pUCT constants.
        discount: gamma per tree edge.
        value_delta_max: floor of the min-max range.
        lstm_horizon: the LSTM state of a node at depth d with d % lstm_horizon == 0 is zeroed.
        tie_random: break ties with the keys (EZ); else take the lowest slot.
        faithful_parent_q_leak: reproduce D-EZ-2 (always serial over roots).
        parallel: spread the roots over numba's threads.

    Returns:
        ``tree.selection``: [6, B] int64, rows ``SEL_*`` (see :class:`Tree`).
    """
    args = (
        tree,
        tie_keys,
        bool(tie_random),
        float(c1),
        float(c2),
        float(discount),
        float(value_delta_max),
        int(lstm_horizon),
    )
    if parallel and not faithful_parent_q_leak:
        _simulate_parallel(*args)
    else:
        _simulate_serial(*args, bool(faithful_parent_q_leak))
    return tree.selection


# --------------------------------------------------------------------------- expansion + backup


@numba.njit(cache=True, inline="always")
def _minmax_true_parent(tree, b, num_nodes, discount):
    """Min and max of Q = r + gamma * W / N over nodes 1..num_nodes-1, r from the true parent."""
    visits = tree.node_visits[b]
    value_sum = tree.node_value_sum[b]
    value_prefix = tree.node_value_prefix[b]
    is_reset = tree.node_is_reset[b]
    parents = tree.parents[b]
    qmin = np.inf
    qmax = -np.inf
    for node in range(1, num_nodes):
        p = parents[node]
        q = edge_reward(value_prefix[node], value_prefix[p], is_reset[p]) + discount * (
            value_sum[node] / visits[node]
        )
        qmax = max(qmax, q)
        qmin = min(qmin, q)
    return qmin, qmax


@numba.njit(cache=True, inline="always")
def _minmax_faithful(tree, b, discount):
    """D-EZ-1 (faithful): EZ ``update_tree_q``'s depth-first scan with a stack, where the reward
    of a popped node is taken against the previously *popped* node, not its parent."""
    legal = tree.legal_mask[b]
    stack = tree.scratch_index[b]
    qmin = np.inf
    qmax = -np.inf
    stack[0] = ROOT
    top = 1
    prev_vp = 0.0
    prev_reset = False
    while top > 0:
        top -= 1
        node = stack[top]
        if node != ROOT:
            q = edge_reward(tree.node_value_prefix[b, node], prev_vp, prev_reset) + discount * (
                tree.node_value_sum[b, node] / tree.node_visits[b, node]
            )
            qmax = max(qmax, q)
            qmin = min(qmin, q)
        for a in range(legal.shape[0]):
            child = tree.children_index[b, node, a]
            if legal[a] and child != UNVISITED:
                stack[top] = child
                top += 1
        prev_vp = tree.node_value_prefix[b, node]
        prev_reset = tree.node_is_reset[b, node]
    return qmin, qmax


@numba.njit(cache=True, inline="always")
def _expand_one(tree, b, new_node, outputs, discount, faithful_minmax_parent):
    sel = tree.selection
    parent = sel[SEL_PARENT, b]
    # Expansion (spec A5 steps 2-3).
    tree.children_index[b, parent, sel[SEL_SLOT, b]] = new_node
    tree.parents[b, new_node] = parent
    tree.action_from_parent[b, new_node] = sel[SEL_SLOT, b]
    tree.node_depth[b, new_node] = sel[SEL_DEPTH, b]
    tree.node_value_prefix[b, new_node] = outputs[b, 0]
    tree.node_is_reset[b, new_node] = sel[SEL_RESET, b] != 0
    tree.node_visits[b, new_node] = 0
    tree.node_value_sum[b, new_node] = 0.0
    tree.children_index[b, new_node, :] = UNVISITED
    _slot_softmax(
        outputs[b], 2, tree.action_ids[b], tree.legal_mask[b], tree.children_prior[b, new_node]
    )

    # Backup (spec A5 step 4; EZ cback_propagate): W += G and N += 1 from the leaf up to the
    # root, with G <- r(node) + gamma * G between levels.
    visits = tree.node_visits[b]
    value_sum = tree.node_value_sum[b]
    value_prefix = tree.node_value_prefix[b]
    is_reset = tree.node_is_reset[b]
    g = outputs[b, 1]
    node = new_node
    while True:
        value_sum[node] += g
        visits[node] += 1
        if node == ROOT:
            break
        p = tree.parents[b, node]
        g = edge_reward(value_prefix[node], value_prefix[p], is_reset[p]) + discount * g
        node = p

    # Min-max statistics, rescanned over the whole tree (spec A5 step 5).
    if faithful_minmax_parent:
        qmin, qmax = _minmax_faithful(tree, b, discount)
    else:  # D-EZ-1 fixed: each node's reward against its own parent
        qmin, qmax = _minmax_true_parent(tree, b, new_node + 1, discount)
    tree.minmax[b, 0] = qmin
    tree.minmax[b, 1] = qmax


@numba.njit(cache=True, parallel=True)
def _expand_parallel(tree, new_node, outputs, discount, faithful_minmax_parent):
    for b in prange(tree.node_visits.shape[0]):
        _expand_one(tree, b, new_node, outputs, discount, faithful_minmax_parent)


@numba.njit(cache=True)
def _expand_serial(tree, new_node, outputs, discount, faithful_minmax_parent):
    for b in range(tree.node_visits.shape[0]):
        _expand_one(tree, b, new_node, outputs, discount, faithful_minmax_parent)


def expand_and_backward(
    tree: Tree,
    simulation: int,
    outputs: np.ndarray,
    *,
    discount: float,
    faithful_minmax_parent: bool,
    parallel: bool,
) -> None:
    """Expand the leaves chosen by the last :func:`simulate`, back up, rescan min-max (spec A5).

    Args:
        tree: the tree; ``tree.selection`` holds the last selection.
        simulation: index s of this simulation; the new nodes get index s + 1.
        outputs: [B, 2 + P] float64, the model's output for the new nodes: value prefix,
            value, then the P policy logits (slot a of root b reads column
            ``2 + tree.action_ids[b, a]``).
        discount: gamma per edge.
        faithful_minmax_parent: reproduce D-EZ-1 in the min-max statistics.
        parallel: spread the roots over numba's threads.
    """
    kernel = _expand_parallel if parallel else _expand_serial
    kernel(
        tree,
        simulation + 1,
        np.ascontiguousarray(outputs, dtype=np.float64),
        float(discount),
        bool(faithful_minmax_parent),
    )
