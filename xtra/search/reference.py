"""A slow, plainly written EfficientZero MCTS, one root at a time (spec A5). For tests only.

Nodes are Python objects with a dict of children; every step is written out from spec A5 so
that it can be checked by reading. It consumes the same random numbers as the compiled search
(:class:`xtra.search.mcts.SearchRandomness`) and must give the same visit counts and values.

The only coupling between roots is D-EZ-2's parent-Q leak, so :func:`reference_search` steps
all roots in lock-step (all selections of a simulation, then all expansions), like EZ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

TIE_EPSILON = 1e-6
_MASK64 = (1 << 64) - 1

ModelFn = Callable[[Any, Any, int], tuple]
"""``model_fn(latent, lstm_state, action_id) -> (latent, lstm_state, value_prefix, value,
policy_logits [P])`` for one node; ``lstm_state`` is a tuple of numpy arrays."""


def splitmix64(seed: int, counter: int) -> int:
    """Output number ``counter`` (from 0) of the SplitMix64 stream started at ``seed``."""
    z = (int(seed) + (counter + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class Node:
    """One tree node: prior, visits N, value sum W, value prefix VP, reset flag, children."""

    def __init__(self, prior: float):
        self.prior = prior
        self.visit_count = 0
        self.value_sum = 0.0
        self.value_prefix = 0.0
        self.is_reset = False
        self.children: dict[int, Node] = {}  # slot -> child; all legal slots once expanded
        self.latent: Any = None
        self.lstm_state: Any = None

    @property
    def expanded(self) -> bool:
        return len(self.children) > 0

    def value(self) -> float:
        return self.value_sum / self.visit_count if self.visit_count > 0 else 0.0

    def expand(self, value_prefix: float, slot_logits: dict[int, float]) -> None:
        """Create a child per legal slot with prior = softmax of the slot logits."""
        self.value_prefix = value_prefix
        top = max(slot_logits.values())
        exps = {slot: math.exp(logit - top) for slot, logit in slot_logits.items()}
        total = 0.0
        for e in exps.values():
            total += e
        for slot, e in exps.items():
            self.children[slot] = Node(e / total)


def reward(child: Node, parent: Node) -> float:
    """Edge reward: the difference of value prefixes, or the child's VP after a reset."""
    if parent.is_reset:
        return child.value_prefix
    return child.value_prefix - parent.value_prefix


def q_value(child: Node, parent: Node, discount: float) -> float:
    """Q(parent, child) = r + gamma * V(child)."""
    return reward(child, parent) + discount * child.value()


class MinMaxStats:
    """Min and max of Q over the tree; normalize as EZ's CMinMaxStats, then clip to [0, 1]."""

    def __init__(self, value_delta_max: float):
        self.value_delta_max = value_delta_max
        self.minimum = math.inf
        self.maximum = -math.inf

    def update(self, q: float) -> None:
        self.minimum = min(self.minimum, q)
        self.maximum = max(self.maximum, q)

    def normalize(self, q: float) -> float:
        delta = self.maximum - self.minimum
        if delta > 0:
            q = (q - self.minimum) / max(delta, self.value_delta_max)
        return min(max(q, 0.0), 1.0)


class RootSearch:
    """The search tree of one root."""

    def __init__(
        self,
        model_fn: ModelFn,
        latent: Any,
        lstm_state: Any,
        root_logits: np.ndarray,
        legal_slots: list[int],
        action_ids: np.ndarray,
        noise: np.ndarray | None,
        *,
        c1: float,
        c2: float,
        discount: float,
        value_delta_max: float,
        lstm_horizon: int,
        exploration_fraction: float,
        faithful_minmax_parent: bool,
        root_value_prefix: float = 0.0,
    ):
        self.model_fn = model_fn
        self.legal_slots = legal_slots
        self.action_ids = action_ids
        self.c1, self.c2, self.discount = c1, c2, discount
        self.lstm_horizon = lstm_horizon
        self.faithful_minmax_parent = faithful_minmax_parent
        self.stats = MinMaxStats(value_delta_max)

        # Root preparation: expand with the root's logits, mix in noise, N = 1, W = 0, VP given.
        self.root = Node(0.0)
        self.root.latent, self.root.lstm_state = latent, lstm_state
        self.root.expand(float(root_value_prefix), self._slot_logits(root_logits))
        if noise is not None:
            for slot, child in self.root.children.items():
                child.prior = (
                    child.prior * (1 - exploration_fraction) + noise[slot] * exploration_fraction
                )
        self.root.visit_count = 1

    def _slot_logits(self, policy_logits: np.ndarray) -> dict[int, float]:
        return {slot: float(policy_logits[self.action_ids[slot]]) for slot in self.legal_slots}

    def mean_q(self, node: Node, is_root: bool, parent_q: float) -> float:
        """Mean Q of the node's visited children, with the parent's mean Q as one extra sample
        below the root (and at a root with no visited child)."""
        qs = []
        for child in node.children.values():
            if child.visit_count > 0:
                qs.append(q_value(child, node, self.discount))
        total = 0.0
        for q in qs:
            total += q
        if is_root and qs:
            return total / len(qs)
        return (parent_q + total) / (len(qs) + 1)

    def ucb_score(self, node: Node, child: Node, mean_q: float) -> float:
        """pUCT score: prior term (parent count = sum of child visits) + normalised value."""
        n = node.visit_count - 1
        # Evaluated in EZ's order so that equal inputs give bit-equal scores.
        prior_score = (math.log((n + self.c2 + 1) / self.c2) + self.c1) * (
            math.sqrt(n) / (child.visit_count + 1)
        )
        prior_score *= child.prior
        if child.visit_count == 0:
            value_score = mean_q
        else:
            value_score = q_value(child, node, self.discount)
        return prior_score + self.stats.normalize(value_score)

    def select(self, tie_key: int | None, parent_q: float) -> tuple[list[Node], int, float]:
        """Walk down by pUCT until an unexpanded child; return (path, its slot, last mean Q)."""
        node = self.root
        path = [node]
        level = 0
        while True:
            mean_q = self.mean_q(node, node is self.root, parent_q)
            parent_q = mean_q
            best = -math.inf
            candidates: list[int] = []
            for slot in self.legal_slots:  # ascending slot order, like EZ's child order
                score = self.ucb_score(node, node.children[slot], mean_q)
                if score > best:
                    best = score
                    candidates = [slot]
                elif score >= best - TIE_EPSILON:
                    candidates.append(slot)
            if tie_key is not None and len(candidates) > 1:
                slot = candidates[splitmix64(tie_key, level) % len(candidates)]
            else:
                slot = candidates[0]
            level += 1
            child = node.children[slot]
            if not child.expanded:
                return path, slot, mean_q
            node = child
            path.append(node)

    def expand_and_backup(self, path: list[Node], slot: int) -> None:
        parent = path[-1]
        leaf = parent.children[slot]
        latent, lstm_state, value_prefix, value, logits = self.model_fn(
            parent.latent, parent.lstm_state, int(self.action_ids[slot])
        )
        depth = len(path)  # edges from the root to the leaf
        if depth % self.lstm_horizon == 0:
            lstm_state = tuple(np.zeros_like(np.asarray(x)) for x in lstm_state)
            leaf.is_reset = True
        leaf.latent, leaf.lstm_state = latent, lstm_state
        leaf.expand(float(value_prefix), self._slot_logits(np.asarray(logits)))

        # Backup: G starts at the leaf's value; each node adds G, then G = r(node) + gamma * G.
        full_path = path + [leaf]
        g = float(value)
        for i in range(len(full_path) - 1, -1, -1):
            node = full_path[i]
            node.value_sum += g
            node.visit_count += 1
            if i > 0:
                g = reward(node, full_path[i - 1]) + self.discount * g

        self.stats = MinMaxStats(self.stats.value_delta_max)
        if self.faithful_minmax_parent:
            self._rescan_like_ez()
        else:
            self._rescan(self.root)

    def _rescan(self, node: Node) -> None:
        """Every expanded non-root node's Q, with the reward against its own parent."""
        for child in node.children.values():
            if child.expanded:
                self.stats.update(q_value(child, node, self.discount))
                self._rescan(child)

    def _rescan_like_ez(self) -> None:
        """D-EZ-1: EZ's stack walk, which takes each popped node's reward against the node
        popped just before it."""
        stack = [self.root]
        prev_vp, prev_reset = 0.0, False
        while stack:
            node = stack.pop()
            if node is not self.root:
                r = node.value_prefix if prev_reset else node.value_prefix - prev_vp
                self.stats.update(r + self.discount * node.value())
            for slot in self.legal_slots:
                if node.children[slot].expanded:
                    stack.append(node.children[slot])
            prev_vp, prev_reset = node.value_prefix, node.is_reset

    def visit_counts(self, num_slots: int) -> np.ndarray:
        counts = np.zeros(num_slots, np.int64)
        for slot, child in self.root.children.items():
            counts[slot] = child.visit_count
        return counts


def reference_search(
    model_fn: ModelFn,
    root_latents: Sequence[Any],
    root_lstm_states: Sequence[Any],
    root_logits: np.ndarray,
    legal_mask: np.ndarray,
    action_ids: np.ndarray,
    *,
    num_simulations: int,
    c1: float,
    c2: float,
    discount: float,
    value_delta_max: float,
    lstm_horizon: int,
    exploration_fraction: float,
    noise: np.ndarray | None,
    tie_keys: np.ndarray | None,
    faithful_minmax_parent: bool = False,
    faithful_parent_q_leak: bool = False,
    root_value_prefix: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Search each root with :class:`RootSearch`; the same inputs and randomness as the compiled
    search (see ``xtra.search.mcts.search_with_randomness``).

    Args:
        model_fn: one node's recurrent inference (see :data:`ModelFn`).
        root_latents, root_lstm_states: B per-root states, passed to ``model_fn`` as they are.
        root_logits: [B, P] root policy logits.
        legal_mask: [B, A] bool legal slots.
        action_ids: [B, A] int, model action id of each slot.
        noise: [B, A] Dirichlet noise or None; tie_keys: [S, B] uint64 or None (lowest slot).
        root_value_prefix: [B] the roots' value prefixes, or None for 0.

    Returns:
        (visit_counts [B, A] int64, root_values [B] float64).
    """
    legal_mask = np.asarray(legal_mask, bool)
    batch, num_slots = legal_mask.shape
    roots = [
        RootSearch(
            model_fn,
            root_latents[b],
            root_lstm_states[b],
            np.asarray(root_logits[b]),
            [int(a) for a in np.flatnonzero(legal_mask[b])],
            np.asarray(action_ids[b]),
            None if noise is None else noise[b],
            c1=c1,
            c2=c2,
            discount=discount,
            value_delta_max=value_delta_max,
            lstm_horizon=lstm_horizon,
            exploration_fraction=exploration_fraction,
            faithful_minmax_parent=faithful_minmax_parent,
            root_value_prefix=0.0 if root_value_prefix is None else root_value_prefix[b],
        )
        for b in range(batch)
    ]
    for sim in range(num_simulations):
        selections = []
        parent_q = 0.0
        for b, root in enumerate(roots):
            key = None if tie_keys is None else int(tie_keys[sim, b])
            # D-EZ-2: fixed, every root starts from 0; faithful, from the previous root's last.
            path, slot, last_q = root.select(key, parent_q if faithful_parent_q_leak else 0.0)
            parent_q = last_q
            selections.append((path, slot))
        for root, (path, slot) in zip(roots, selections):
            root.expand_and_backup(path, slot)
    visit_counts = np.stack([root.visit_counts(num_slots) for root in roots])
    root_values = np.array([root.root.value() for root in roots], np.float64)
    return visit_counts, root_values
