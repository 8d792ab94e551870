"""The search tree as preallocated arrays, and the compiled MCTS steps that update it (spec A5).

One :class:`Tree` holds ``B`` independent trees (one per root) of at most ``N = S + 1`` nodes
(``S`` simulations: node ``s + 1`` is the node expanded by simulation ``s``, the root is node
``ROOT``). Per-node arrays are ``node_*`` ``[B, N]``, per-edge arrays ``children_*`` ``[B, N, A]``
where ``A`` is the number of action *slots* (the largest legal set in the batch); slot ``a`` of
root ``b`` exists only where ``legal_mask[b, a]`` and is the same legal set at every depth.

The steps -- :func:`prepare_roots`, :func:`simulate` (selection), :func:`expand_and_backward`
(expansion, backup, min-max statistics) and :func:`expand_and_simulate` (both in one pass) --
run one numba kernel over all roots and update the arrays in place; ``parallel=True`` spreads
the roots over numba's threads (``prange``), with identical results. Arithmetic is float64;
the only randomness is the tie-break, which consumes one ``uint64`` key per (simulation, root)
through :func:`splitmix64`, so that the plain-Python reference (``reference.py``) replays it.

Implementation notes (numba 0.68; tests/test_search_reference.py guards the results):

* One kernel, :func:`_step_kernel`, does a root's expansion and its next selection with every
  line written out in the root loop, indexing arrays with scalars only: each array handed to a
  helper function (inlined or not), fetched from a tuple or sliced into a view costs two atomic
  reference-count updates, which took a quarter of the search time. (Writes through a
  NamedTuple field inside a ``prange`` body are also silently lost.) It is compiled twice, with
  and without ``parallel=True``.
* Priors are computed lazily: a new node stores its slots' logits, and selection turns them into
  a softmax only when it walks through the node with a visited child (on the first walk-through
  every child ties and priors do not matter, D-EZ-4) -- most leaves never need them.
* Each node caches its Q (``node_q``), updated by the backup, so that selection and the min-max
  statistics read one number instead of recomputing it (same arithmetic, same bits).
* With host-memory state pools the kernel also copies each selected parent's latent and
  recurrent-state rows into the model's input buffers (``Steps(gather=...)``), as bytes, so that
  one compiled version serves every dtype; a reset parent's state is read as zeros.
* The compiled code is cached on disk in a user cache directory (``xtra.search._cache``).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import prange

from xtra.search._cache import cached_njit

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
        node_value_prefix: [B, N] float64, VP predicted when the node was expanded (root: the
            root's value prefix given to :func:`prepare_roots`, 0 by default).
        node_q: [B, N] float64, Q of the edge into the node, r + gamma * W / N with r against
            its parent (unused at the root); kept up to date by the backup.
        node_is_reset: [B, N] bool, the node's LSTM state was zeroed (depth % lstm_horizon == 0);
            its children's rewards are their VP alone.
        node_depth: [B, N] int32, edges from the root.
        parents: [B, N] int32, parent node (UNVISITED for the root).
        action_from_parent: [B, N] int32, slot of the edge parent -> node.
        children_index: [B, N, A] int32, child node of each edge, UNVISITED if not expanded.
        children_prior: [B, N, A] float64, prior P of each edge (0 on illegal slots). Until
            ``node_prior_ready`` the row holds the slots' policy logits instead: the softmax is
            taken when selection first walks through the node (most leaves never are).
        node_prior_ready: [B, N] bool, ``children_prior`` of the node holds priors.
        legal_mask: [B, A] bool, legal slots of each root (the same at every depth).
        action_ids: [B, A] int64, the model's action id of each slot (0 on illegal slots).
        minmax: [B, 2] float64, (min, max) of Q over expanded non-root nodes (spec A5 step 5).
        selection: [6, B] int64, the last :func:`simulate`'s output, rows ``SEL_*``: parent node,
            action slot, depth of the new node, parent's row in the node-major latent pool
            (``node * B + b``), action id, and 1 where the new node's LSTM state must be zeroed.
        scratch_index: [B, max(A, N)] int32, kernel scratch: tie candidates; DFS stack (D-EZ-1).
    """

    node_visits: np.ndarray
    node_value_sum: np.ndarray
    node_value_prefix: np.ndarray
    node_q: np.ndarray
    node_is_reset: np.ndarray
    node_depth: np.ndarray
    parents: np.ndarray
    action_from_parent: np.ndarray
    children_index: np.ndarray
    children_prior: np.ndarray
    node_prior_ready: np.ndarray
    legal_mask: np.ndarray
    action_ids: np.ndarray
    minmax: np.ndarray
    selection: np.ndarray
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

    def root_child_q(self) -> np.ndarray:
        """[B, A] float64 Q of each root child, r + gamma * W / N (0 on unvisited and illegal
        slots: read them with :meth:`root_visit_counts`)."""
        child = self.children_index[:, ROOT, :]
        rows = np.arange(self.batch_size)[:, None]
        q = self.node_q[rows, np.maximum(child, 0)]
        return np.where(child == UNVISITED, 0.0, q)


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
        node_q=np.zeros((b, n), np.float64),
        node_is_reset=np.zeros((b, n), np.bool_),
        node_depth=np.zeros((b, n), np.int32),
        parents=np.full((b, n), UNVISITED, np.int32),
        action_from_parent=np.full((b, n), UNVISITED, np.int32),
        # Rows are initialised when their node is expanded; only the root's is read before that.
        children_index=np.empty((b, n, a), np.int32),
        children_prior=np.empty((b, n, a), np.float64),
        node_prior_ready=np.zeros((b, n), np.bool_),
        legal_mask=legal,
        action_ids=np.ascontiguousarray(np.where(legal, action_ids, 0), dtype=np.int64),
        minmax=np.empty((b, 2), np.float64),
        selection=np.zeros((6, b), np.int64),
        scratch_index=np.zeros((b, max(a, n)), np.int32),
    )


def reset_tree(tree: Tree, legal_mask: np.ndarray, action_ids: np.ndarray) -> None:
    """Make an allocated tree as :func:`make_tree` leaves it, for new roots of the same shape."""
    legal = np.asarray(legal_mask, dtype=np.bool_)
    if legal.shape != tree.legal_mask.shape:
        raise ValueError(f"legal_mask {legal.shape} does not fit the tree {tree.legal_mask.shape}")
    for a in (tree.node_visits, tree.node_value_sum, tree.node_value_prefix, tree.node_q):
        a.fill(0)
    for a in (tree.node_is_reset, tree.node_depth, tree.node_prior_ready, tree.selection):
        a.fill(0)
    tree.scratch_index.fill(0)
    tree.parents.fill(UNVISITED)
    tree.action_from_parent.fill(UNVISITED)
    tree.legal_mask[...] = legal
    tree.action_ids[...] = np.where(legal, action_ids, 0)


# --------------------------------------------------------------------------- equations


@cached_njit(inline="always")
def splitmix64(seed: np.uint64, counter: int) -> np.uint64:
    """The ``counter``-th output (from 0) of a SplitMix64 stream started at ``seed``.

    Tie-break randomness: simulation ``s`` of root ``b`` uses ``splitmix64(keys[s, b], t)`` at
    tree level ``t``, so that the batched kernels and the one-root reference draw the same numbers.
    """
    z = seed + np.uint64(counter + 1) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@cached_njit(inline="always")
def puct_coefficient(children_visits: int, c1: float, c2: float) -> float:
    """pUCT's visit-dependent factor ``log((n + c2 + 1) / c2) + c1`` (spec A5; EZ ``cucb_score``),
    with ``n`` = the parent's visits minus one = the sum of its children's visits (fact 6)."""
    return math.log((children_visits + c2 + 1.0) / c2) + c1


@cached_njit(inline="always")
def puct_prior_score(prior: float, child_visits: int, pb_c: float, sqrt_n: float) -> float:
    """pUCT exploration term ``P * pb_c * sqrt(n) / (1 + N_child)`` (spec A5; MuZero App. B).

    ``pb_c`` from :func:`puct_coefficient` and ``sqrt_n = sqrt(n)`` are per parent node; the
    product is evaluated in EZ's order, ``(pb_c * (sqrt(n) / (N_child + 1))) * P``.
    """
    return (pb_c * (sqrt_n / (child_visits + 1.0))) * prior


@cached_njit(inline="always")
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


@cached_njit(inline="always")
def edge_reward(vp_child: float, vp_parent: float, parent_is_reset: bool) -> float:
    """Reward of an edge from value prefixes: VP_child - VP_parent, or VP_child after a reset."""
    if parent_is_reset:
        return vp_child
    return vp_child - vp_parent


@cached_njit(inline="always")
def _softmax_row(x: np.ndarray, b: int, node: int, legal_mask: np.ndarray) -> None:
    """x[b, node] <- softmax of x[b, node] over root b's legal slots; 0 on illegal slots.

    Scalar indexing only (no row views): an array view costs two atomic reference-count updates
    in numba, more than the arithmetic here.
    """
    m = -np.inf
    for a in range(legal_mask.shape[1]):
        if legal_mask[b, a] and x[b, node, a] > m:
            m = x[b, node, a]
    total = 0.0
    for a in range(legal_mask.shape[1]):
        if legal_mask[b, a]:
            e = math.exp(x[b, node, a] - m)
            x[b, node, a] = e
            total += e
        else:
            x[b, node, a] = 0.0
    for a in range(legal_mask.shape[1]):
        x[b, node, a] /= total


def _renamed(fn: Callable, name: str) -> Callable:
    """A copy of ``fn`` under another name, to compile one loop both with and without
    ``parallel=True``: numba's on-disk cache tells functions apart by qualified name only."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    return copy


# --------------------------------------------------------------------------- root preparation


@cached_njit
def _prepare_roots(tree, root_logits, noise, exploration_fraction, add_noise, root_value_prefix):
    prior = tree.children_prior
    for b in range(tree.node_visits.shape[0]):
        tree.node_visits[b, ROOT] = 1  # D-EZ-3: the root starts with N = 1, W = 0
        tree.node_value_sum[b, ROOT] = 0.0
        tree.node_value_prefix[b, ROOT] = root_value_prefix[b]
        tree.node_q[b, ROOT] = 0.0
        tree.node_is_reset[b, ROOT] = False
        tree.node_depth[b, ROOT] = 0
        for a in range(prior.shape[2]):
            tree.children_index[b, ROOT, a] = UNVISITED
            legal = tree.legal_mask[b, a]
            prior[b, ROOT, a] = root_logits[b, tree.action_ids[b, a]] if legal else 0.0
        _softmax_row(prior, b, ROOT, tree.legal_mask)
        tree.node_prior_ready[b, ROOT] = True
        if add_noise:
            for a in range(prior.shape[2]):
                if tree.legal_mask[b, a]:
                    prior[b, ROOT, a] = (
                        prior[b, ROOT, a] * (1.0 - exploration_fraction)
                        + noise[b, a] * exploration_fraction
                    )
        tree.minmax[b, 0] = np.inf  # empty statistic: normalized_q returns q unchanged
        tree.minmax[b, 1] = -np.inf


def prepare_roots(
    tree: Tree,
    root_logits: np.ndarray,
    noise: np.ndarray | None,
    exploration_fraction: float,
    root_value_prefix: np.ndarray | None = None,
) -> None:
    """Expand every root: prior = softmax of its legal logits, mixed with noise (spec A5).

    Args:
        tree: the tree to reset; its roots get N = 1, W = 0 and the given value prefix.
        root_logits: [B, P] policy logits of the roots over the whole policy head (slot a of
            root b reads ``root_logits[b, tree.action_ids[b, a]]``).
        noise: [B, A] Dirichlet sample over each root's legal slots, or None for no noise:
            ``P = (1 - exploration_fraction) * P + exploration_fraction * noise``.
        exploration_fraction: weight of the noise.
        root_value_prefix: [B] the roots' value prefixes (EZ ``Roots.prepare``'s
            ``value_prefixs``; the children's rewards are taken against it), or None for 0.
    """
    add_noise = noise is not None
    batch = tree.node_visits.shape[0]
    if root_value_prefix is None:
        vp = np.zeros(batch, np.float64)
    else:
        vp = np.ascontiguousarray(np.reshape(root_value_prefix, -1), dtype=np.float64)
        if vp.shape != (batch,):
            raise ValueError(f"root_value_prefix must have B={batch} values, got {vp.shape}")
    _prepare_roots(
        tree,
        np.ascontiguousarray(root_logits, dtype=np.float64),
        np.ascontiguousarray(noise if add_noise else np.zeros((1, 1)), dtype=np.float64),
        float(exploration_fraction),
        add_noise,
        vp,
    )


# --------------------------------------------------------------------------- the step kernel


@cached_njit
def _minmax_faithful(
    node_visits,
    node_value_sum,
    node_value_prefix,
    node_is_reset,
    children_index,
    legal_mask,
    stack,
    b,
    discount,
):
    """D-EZ-1 (faithful): EZ ``update_tree_q``'s depth-first scan with a stack, where the reward
    of a popped node is taken against the previously *popped* node, not its parent."""
    qmin = np.inf
    qmax = -np.inf
    stack[b, 0] = ROOT
    top = 1
    prev_vp = 0.0
    prev_reset = False
    while top > 0:
        top -= 1
        node = stack[b, top]
        if node != ROOT:
            q = edge_reward(node_value_prefix[b, node], prev_vp, prev_reset) + discount * (
                node_value_sum[b, node] / node_visits[b, node]
            )
            qmax = max(qmax, q)
            qmin = min(qmin, q)
        for a in range(legal_mask.shape[1]):
            child = children_index[b, node, a]
            if legal_mask[b, a] and child != UNVISITED:
                stack[b, top] = child
                top += 1
        prev_vp = node_value_prefix[b, node]
        prev_reset = node_is_reset[b, node]
    return qmin, qmax


def _step_kernel(
    # The Tree's arrays, in field order (the wrappers pass *tree).
    node_visits,
    node_value_sum,
    node_value_prefix,
    node_q,
    node_is_reset,
    node_depth,
    parents,
    action_from_parent,
    children_index,
    children_prior,
    node_prior_ready,
    legal_mask,
    action_ids,
    minmax,
    selection,
    scratch_index,
    # Expansion of the leaves in `selection` as node `new_node`.
    expand,
    new_node,
    outputs,
    discount,
    faithful_minmax_parent,
    # Then the next selection.
    select,
    tie_keys,
    tie_random,
    c1,
    c2,
    value_delta_max,
    lstm_horizon,
    parent_q_leak,
    leak_carry,
    # Then the gather of the selected parents' states from host pools (see Steps).
    gather,
    pool_0,
    input_0,
    pool_1,
    input_1,
    pool_2,
    input_2,
):
    """One pass over the roots: expansion + backup of the selected leaves, then selection, then
    (``gather``) a copy of each selected parent's states into the model's input buffers.

    Each root's work is written out in this one loop, without helper functions taking arrays:
    every array handed to a function costs two atomic reference-count updates, which took a
    quarter of the search time. Compiled twice, with ``prange`` threads and without.

    The pools and inputs are byte views, ``[layers, rows, bytes per row]`` uint8 (one compiled
    version for every dtype): pool 0 is the latent, pools 1 and 2 the recurrent state, whose
    input rows are zeros where the parent's state was reset (spec A5 step 3). The gather runs
    after the root loop, serially: inside the ``prange`` loop it made the multi-threaded
    kernel's compilation 60% slower (25 s instead of 15 s).
    """
    num_slots = legal_mask.shape[1]
    num_reset = 0
    for b in prange(node_visits.shape[0]):
        if expand:
            # Expansion (spec A5 steps 2-3).
            parent = selection[SEL_PARENT, b]
            parent_slot = selection[SEL_SLOT, b]
            children_index[b, parent, parent_slot] = new_node
            parents[b, new_node] = parent
            action_from_parent[b, new_node] = parent_slot
            node_depth[b, new_node] = selection[SEL_DEPTH, b]
            node_value_prefix[b, new_node] = outputs[b, 0]
            node_is_reset[b, new_node] = selection[SEL_RESET, b] != 0
            node_visits[b, new_node] = 0
            node_value_sum[b, new_node] = 0.0
            # The slots' logits; selection turns them into priors when it first needs them.
            for a in range(num_slots):
                children_index[b, new_node, a] = UNVISITED
                legal = legal_mask[b, a]
                children_prior[b, new_node, a] = outputs[b, 2 + action_ids[b, a]] if legal else 0.0
            node_prior_ready[b, new_node] = False

            # Backup (spec A5 step 4; EZ cback_propagate): W += G and N += 1 from the leaf up
            # to the root, with G <- r(node) + gamma * G between levels; Q follows W / N.
            g = outputs[b, 1]
            node = new_node
            while True:
                node_value_sum[b, node] += g
                node_visits[b, node] += 1
                if node == ROOT:
                    break
                p = parents[b, node]
                r = edge_reward(
                    node_value_prefix[b, node], node_value_prefix[b, p], node_is_reset[b, p]
                )
                node_q[b, node] = r + discount * (node_value_sum[b, node] / node_visits[b, node])
                g = r + discount * g
                node = p

            # Min-max statistics over every expanded non-root node (spec A5 step 5).
            if faithful_minmax_parent:
                qmin, qmax = _minmax_faithful(
                    node_visits,
                    node_value_sum,
                    node_value_prefix,
                    node_is_reset,
                    children_index,
                    legal_mask,
                    scratch_index,
                    b,
                    discount,
                )
            else:  # D-EZ-1 fixed: each node's Q against its own parent, kept in node_q
                qmin = np.inf
                qmax = -np.inf
                for n in range(1, new_node + 1):
                    qmax = max(qmax, node_q[b, n])
                    qmin = min(qmin, node_q[b, n])
            minmax[b, 0] = qmin
            minmax[b, 1] = qmax

        if select:
            # Selection (EZ cbatch_traverse, spec A5 step 1): from the root down by pUCT to an
            # unexpanded edge. D-EZ-2 fixed: the root's parent Q is 0; faithful (serial only):
            # the previous root's last mean Q.
            parent_q = leak_carry[0] if parent_q_leak else 0.0
            tie_key = tie_keys[b]
            # Assigned on every path before use; set here so that numba's parfor pass does not
            # take it for a value carried between roots (it fails on that under Python 3.12).
            slot = 0
            qmin = minmax[b, 0]
            qmax = minmax[b, 1]
            node = ROOT
            depth = 0
            while True:
                n = node_visits[b, node] - 1  # = the sum of the children's visits
                if n == 0:
                    # No child visited yet (D-EZ-4): sqrt(n) = 0 zeroes every prior term and
                    # every child takes the node's mean Q, so all legal children tie and the
                    # priors are not needed. The general path below picks the same child.
                    mean_q = (parent_q + 0.0) / 1
                    parent_q = mean_q
                    if normalized_q(mean_q, qmin, qmax, value_delta_max) >= 0.0:  # not NaN
                        n_ties = 0
                        for a in range(num_slots):
                            if legal_mask[b, a]:
                                n_ties += 1
                        pick = 0
                        if tie_random and n_ties > 1:
                            pick = np.int64(splitmix64(tie_key, depth) % np.uint64(n_ties))
                        for a in range(num_slots):
                            if legal_mask[b, a]:
                                if pick == 0:
                                    slot = a
                                    break
                                pick -= 1
                        depth += 1
                        break  # no child is expanded: this edge is the leaf

                if not node_prior_ready[b, node]:  # first walk with n > 0: logits -> P
                    _softmax_row(children_prior, b, node, legal_mask)
                    node_prior_ready[b, node] = True
                # Mean Q of the node (EZ get_mean_q): the value score of unvisited children.
                total_q = 0.0
                n_visited = 0
                for a in range(num_slots):
                    child = children_index[b, node, a]
                    if child != UNVISITED and legal_mask[b, a]:  # expanded <=> visited
                        total_q += node_q[b, child]
                        n_visited += 1
                if node == ROOT and n_visited > 0:
                    mean_q = total_q / n_visited
                else:  # below the root the parent's mean Q counts as one more sample
                    mean_q = (parent_q + total_q) / (n_visited + 1)
                parent_q = mean_q

                # pUCT; EZ's running-best tie rule: a strictly better score restarts the
                # candidate list, a score within TIE_EPSILON of the running best joins it.
                pb_c = puct_coefficient(n, c1, c2)
                sqrt_n = math.sqrt(n)
                unvisited_value = normalized_q(mean_q, qmin, qmax, value_delta_max)
                best = -np.inf
                n_ties = 0
                for a in range(num_slots):
                    if legal_mask[b, a]:
                        child = children_index[b, node, a]
                        prior = children_prior[b, node, a]
                        if child == UNVISITED:
                            score = puct_prior_score(prior, 0, pb_c, sqrt_n) + unvisited_value
                        else:
                            score = puct_prior_score(prior, node_visits[b, child], pb_c, sqrt_n)
                            score += normalized_q(node_q[b, child], qmin, qmax, value_delta_max)
                        if score > best:
                            best = score
                            scratch_index[b, 0] = a
                            n_ties = 1
                        elif score >= best - TIE_EPSILON:
                            scratch_index[b, n_ties] = a
                            n_ties += 1
                pick = 0
                if tie_random and n_ties > 1:
                    pick = np.int64(splitmix64(tie_key, depth) % np.uint64(n_ties))
                slot = scratch_index[b, pick]
                depth += 1
                child = children_index[b, node, slot]
                if child == UNVISITED:
                    break
                node = child

            selection[SEL_PARENT, b] = node
            selection[SEL_SLOT, b] = slot
            selection[SEL_DEPTH, b] = depth
            selection[SEL_POOL_ROW, b] = node * node_visits.shape[0] + b
            selection[SEL_ACTION_ID, b] = action_ids[b, slot]
            # Spec A5 step 3: a new node at depth d with d % horizon == 0 gets a zeroed LSTM.
            selection[SEL_RESET, b] = 1 if depth % lstm_horizon == 0 else 0
            num_reset += selection[SEL_RESET, b]
            if parent_q_leak:
                leak_carry[0] = parent_q

    if gather:
        # After the root loop (outside the prange: a serial copy compiles much faster there).
        for b_gather in range(node_visits.shape[0]):
            parent_node = selection[SEL_PARENT, b_gather]
            parent_row = selection[SEL_POOL_ROW, b_gather]
            for lay in range(pool_0.shape[0]):
                for byte in range(pool_0.shape[2]):
                    input_0[lay, b_gather, byte] = pool_0[lay, parent_row, byte]
            if node_is_reset[b_gather, parent_node]:
                for lay in range(pool_1.shape[0]):
                    for byte in range(pool_1.shape[2]):
                        input_1[lay, b_gather, byte] = 0
                for lay in range(pool_2.shape[0]):
                    for byte in range(pool_2.shape[2]):
                        input_2[lay, b_gather, byte] = 0
            else:
                for lay in range(pool_1.shape[0]):
                    for byte in range(pool_1.shape[2]):
                        input_1[lay, b_gather, byte] = pool_1[lay, parent_row, byte]
                for lay in range(pool_2.shape[0]):
                    for byte in range(pool_2.shape[2]):
                        input_2[lay, b_gather, byte] = pool_2[lay, parent_row, byte]
    return num_reset


_step_parallel = cached_njit(_step_kernel, parallel=True)
_step_serial = cached_njit(_renamed(_step_kernel, "_step_kernel_serial"))
_NO_OUTPUTS = np.zeros((1, 1), np.float64)
_NO_KEYS = np.zeros(1, np.uint64)
_NO_BYTES = np.zeros((0, 0, 0), np.uint8)
_NO_GATHER = (False, _NO_BYTES, _NO_BYTES, _NO_BYTES, _NO_BYTES, _NO_BYTES, _NO_BYTES)


def _step(
    tree,
    parallel,
    expand,
    simulation,
    outputs,
    discount,
    faithful_minmax_parent,
    select,
    tie_keys,
    tie_random,
    c1,
    c2,
    value_delta_max,
    lstm_horizon,
    parent_q_leak,
):
    kernel = _step_parallel if parallel and not parent_q_leak else _step_serial
    return int(
        kernel(
            *tree,
            bool(expand),
            int(simulation) + 1,
            outputs,
            float(discount),
            bool(faithful_minmax_parent),
            bool(select),
            tie_keys,
            bool(tie_random),
            float(c1),
            float(c2),
            float(value_delta_max),
            int(lstm_horizon),
            bool(parent_q_leak),
            np.zeros(1, np.float64),
            *_NO_GATHER,
        )
    )


class Steps:
    """The step kernel with one search's constant arguments bound once.

    Same results as :func:`simulate`, :func:`expand_and_simulate` and :func:`expand_and_backward`
    (the same compiled kernel, with arguments of the same types), for a driver that calls it
    once per simulation: the per-call conversions and allocations of those wrappers cost a few
    microseconds, which matters at small batches.

    ``gather``: host pools to gather from after each selection, as byte views (uint8, C order)
    ``(pool_0, input_0, pool_1, input_1, pool_2, input_2)``: pool ``k`` is ``[L_k, rows, n_k]``
    with row ``node * B + b``, input ``k`` is ``[L_k, B, n_k]``; after the kernel, input row
    ``b`` holds the selected parent's row, or zeros for pools 1 and 2 when that parent's state
    was reset. An unused pair is ``(0, 0, 0)``-shaped. None: no gather (``tree.selection``
    says which rows to read).
    """

    def __init__(
        self,
        tree: Tree,
        *,
        c1: float,
        c2: float,
        discount: float,
        value_delta_max: float,
        lstm_horizon: int,
        tie_random: bool,
        faithful_minmax_parent: bool,
        faithful_parent_q_leak: bool,
        parallel: bool,
        gather: tuple[np.ndarray, ...] | None = None,
    ):
        leak = bool(faithful_parent_q_leak)
        if gather is None:
            self._gather = _NO_GATHER
        else:
            if len(gather) != 6 or not all(
                a.dtype == np.uint8 and a.ndim == 3 and a.flags.c_contiguous for a in gather
            ):
                raise ValueError("gather: six C-contiguous [L, rows, bytes] uint8 arrays")
            self._gather = (True, *gather)
        self._kernel = _step_parallel if parallel and not leak else _step_serial
        self._tree = tuple(tree)
        self._discount = float(discount)
        self._minmax_parent = bool(faithful_minmax_parent)
        self._select = (
            bool(tie_random),
            float(c1),
            float(c2),
            float(value_delta_max),
            int(lstm_horizon),
            leak,
        )
        self._leak = leak
        self._carry = np.zeros(1, np.float64)

    def _carry_reset(self) -> np.ndarray:
        # D-EZ-2's carried parent Q restarts at 0 in every selection pass.
        if self._leak:
            self._carry[0] = 0.0
        return self._carry

    def simulate(self, tie_keys: np.ndarray) -> int:
        """:func:`simulate`; returns the number of new nodes whose LSTM state is zeroed."""
        return self._kernel(
            *self._tree,
            False,
            0,
            _NO_OUTPUTS,
            self._discount,
            False,
            True,
            tie_keys,
            *self._select,
            self._carry_reset(),
            *self._gather,
        )

    def expand_and_simulate(
        self, simulation: int, outputs: np.ndarray, tie_keys: np.ndarray
    ) -> int:
        """:func:`expand_and_simulate` (``outputs``: [B, 2 + P] C-contiguous float64)."""
        return self._kernel(
            *self._tree,
            True,
            simulation + 1,
            outputs,
            self._discount,
            self._minmax_parent,
            True,
            tie_keys,
            *self._select,
            self._carry_reset(),
            *self._gather,
        )

    def expand_and_backward(self, simulation: int, outputs: np.ndarray) -> None:
        """:func:`expand_and_backward` (``outputs``: [B, 2 + P] C-contiguous float64)."""
        self._kernel(
            *self._tree,
            True,
            simulation + 1,
            outputs,
            self._discount,
            self._minmax_parent,
            False,
            _NO_KEYS,
            False,
            1.0,
            1.0,
            0.0,
            1,
            False,
            self._carry,
            *_NO_GATHER,
        )


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
) -> int:
    """Selection for every root: follow pUCT from the root to an unexpanded edge (spec A5 step 1).

    Args:
        tree: the tree (read; ``tree.selection`` and the scratch space are written).
        tie_keys: [B] uint64, this simulation's tie-break keys (read only if ``tie_random``).
        c1, c2: pUCT constants.
        discount: gamma per tree edge.
        value_delta_max: floor of the min-max range.
        lstm_horizon: the LSTM state of a node at depth d with d % lstm_horizon == 0 is zeroed.
        tie_random: break ties with the keys (EZ); else take the lowest slot.
        faithful_parent_q_leak: reproduce D-EZ-2 (runs serially over the roots).
        parallel: spread the roots over numba's threads.

    Returns:
        The number of roots whose new node gets a zeroed LSTM state; the selection itself is
        in ``tree.selection`` ([6, B] int64, rows ``SEL_*``, see :class:`Tree`).
    """
    return _step(
        tree,
        parallel,
        False,
        -1,
        _NO_OUTPUTS,
        discount,
        False,
        True,
        tie_keys,
        tie_random,
        c1,
        c2,
        value_delta_max,
        lstm_horizon,
        faithful_parent_q_leak,
    )


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
    _step(
        tree,
        parallel,
        True,
        simulation,
        np.ascontiguousarray(outputs, dtype=np.float64),
        discount,
        faithful_minmax_parent,
        False,
        _NO_KEYS,
        False,
        1.0,
        1.0,
        0.0,
        1,
        False,
    )


def expand_and_simulate(
    tree: Tree,
    simulation: int,
    outputs: np.ndarray,
    next_tie_keys: np.ndarray,
    *,
    c1: float,
    c2: float,
    discount: float,
    value_delta_max: float,
    lstm_horizon: int,
    tie_random: bool,
    faithful_minmax_parent: bool,
    faithful_parent_q_leak: bool,
    parallel: bool,
) -> int:
    """:func:`expand_and_backward` for simulation s, then :func:`simulate` for s + 1, in one
    pass over the roots: a root's two steps do not depend on the other roots, and one kernel
    call (one thread launch) replaces two. Same arguments and result as those two.
    """
    return _step(
        tree,
        parallel,
        True,
        simulation,
        np.ascontiguousarray(outputs, dtype=np.float64),
        discount,
        faithful_minmax_parent,
        True,
        next_tie_keys,
        tie_random,
        c1,
        c2,
        value_delta_max,
        lstm_horizon,
        faithful_parent_q_leak,
    )
