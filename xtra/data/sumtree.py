"""A sum tree over non-negative leaf weights, with vectorised batch operations (spec A6.2).

The tree is one flat ``float64`` array of ``2 L`` nodes (``L`` leaves, a power of two): node 1 is
the root, node ``i`` has children ``2i`` and ``2i + 1``, and leaf ``j`` is node ``L + j``. Every
internal node always equals ``left + right`` of its *current* children (recomputed, never
incremented), so a tree rebuilt from the same leaves is bit-identical to one updated step by step;
that is what makes a saved and reloaded replay buffer draw exactly the same samples.

Batch operations loop over the ``log2 L`` levels, not over the ``M`` queries: a draw of ``B = 256``
indices costs ``O(B log L)`` numpy work and does not grow linearly with the number of leaves.
"""

from __future__ import annotations

import numpy as np

from xtra.errors import XtraError


class SumTree:
    """Leaf weights ``w [L]`` with O(log L) prefix-sum search and updates, batched over queries."""

    def __init__(self, num_leaves: int) -> None:
        if num_leaves < 1:
            raise ValueError(f"a sum tree needs at least one leaf, got {num_leaves}")
        self.num_leaves = 1 << (int(num_leaves) - 1).bit_length()
        self.depth = self.num_leaves.bit_length() - 1
        self.nodes = np.zeros(2 * self.num_leaves, dtype=np.float64)

    # ------------------------------------------------------------------ reads

    @property
    def total(self) -> float:
        """Sum of all leaf weights."""
        return float(self.nodes[1])

    @property
    def leaves(self) -> np.ndarray:
        """View of the leaf weights ``[L]`` (do not write into it: use :meth:`update`)."""
        return self.nodes[self.num_leaves :]

    def get(self, leaves: np.ndarray) -> np.ndarray:
        """Weights ``[M]`` of the leaves ``[M]``."""
        return self.nodes[self.num_leaves + np.asarray(leaves, dtype=np.int64)]

    def find(self, prefix: np.ndarray) -> np.ndarray:
        """Leaves ``[M]`` whose cumulative-weight interval contains each of ``prefix [M]``.

        Leaf ``j`` is returned for ``cumsum[j-1] <= u < cumsum[j]`` (numpy's
        ``searchsorted(cumsum, u, side="right")``). A zero-weight leaf is never returned while
        the total is positive: a descent only enters subtrees of positive weight, which also
        absorbs rounding at ``u`` close to the total.
        """
        u = np.array(prefix, dtype=np.float64, copy=True)
        idx = np.ones(u.shape, dtype=np.int64)
        nodes = self.nodes
        for _ in range(self.depth):
            left_idx = 2 * idx
            left = nodes[left_idx]
            right = nodes[left_idx + 1]
            go_right = (u >= left) & (right > 0.0)
            u -= np.where(go_right, left, 0.0)
            idx = left_idx + go_right
        return idx - self.num_leaves

    # ------------------------------------------------------------------ writes

    def update(self, leaves: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``[M]`` to ``values [M]`` (or a scalar) and refresh their ancestors.

        With repeated leaves the last value wins, as with numpy fancy assignment.
        """
        leaves = np.asarray(leaves, dtype=np.int64).ravel()
        if leaves.size == 0:
            return
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), leaves.shape)
        if np.any(values < 0) or not np.all(np.isfinite(values)):
            raise ValueError("sum-tree weights must be finite and >= 0")
        nodes = self.nodes
        idx = leaves + self.num_leaves
        nodes[idx] = values
        for _ in range(self.depth):
            # A parent shared by several updated leaves is written several times with the same
            # sum of its (already updated) children: harmless, and cheaper than np.unique.
            idx = idx >> 1
            nodes[idx] = nodes[2 * idx] + nodes[2 * idx + 1]

    def rebuild(self, leaf_values: np.ndarray) -> None:
        """Replace all ``L`` leaves at once (``leaf_values [L]``) and recompute every node."""
        leaf_values = np.asarray(leaf_values, dtype=np.float64)
        if leaf_values.shape != (self.num_leaves,):
            raise ValueError(f"expected {self.num_leaves} leaf values, got {leaf_values.shape}")
        if np.any(leaf_values < 0) or not np.all(np.isfinite(leaf_values)):
            raise ValueError("sum-tree weights must be finite and >= 0")
        nodes = self.nodes
        nodes[self.num_leaves :] = leaf_values
        lo = self.num_leaves
        while lo > 1:
            parents = np.arange(lo // 2, lo)
            nodes[parents] = nodes[2 * parents] + nodes[2 * parents + 1]
            lo //= 2

    # ------------------------------------------------------------------ sampling

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` leaves drawn i.i.d. with probability ``w_j / sum(w)`` (with replacement)."""
        total = self.total
        if total <= 0.0:
            raise XtraError("cannot sample from a sum tree whose weights are all zero")
        return self.find(rng.random(count) * total)

    def sample_distinct(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` distinct leaves by successive sampling without replacement.

        Distribution: the first leaf is drawn with probability ``w_j / sum(w)``, each next one
        with ``w_j / sum(w over leaves not yet drawn)``, so an ordered draw ``(j_1..j_B)`` has
        probability ``prod_k w_{j_k} / (W - w_{j_1} - ... - w_{j_{k-1}})``. This is exactly
        numpy's ``RandomState.choice(n, B, replace=False, p=w/W)``, which EfficientZero uses.

        Procedure (vectorised in rounds, no Python loop per sample): draw the missing number of
        leaves i.i.d. from the current weights, keep the distinct ones in order of first
        appearance, set their weights to 0, and repeat until ``count`` are drawn; then restore
        the weights. A round is the i.i.d. sequence with already-drawn leaves rejected, whose
        first ``count`` distinct values are the successive sample. Returns ``[count]``, in draw
        order. Raises :class:`XtraError` when fewer than ``count`` leaves have positive weight.
        """
        chosen = np.empty(count, dtype=np.int64)
        saved = np.empty(count, dtype=np.float64)
        n = 0
        try:
            while n < count:
                total = self.total
                if total <= 0.0:
                    raise XtraError(
                        f"asked for {count} distinct samples but only {n} transitions have a "
                        "positive priority: collect more data before sampling (replay.start_transitions)"
                    )
                drawn = self.find(rng.random(count - n) * total)
                _, first = np.unique(drawn, return_index=True)
                new = drawn[np.sort(first)]
                chosen[n : n + new.size] = new
                saved[n : n + new.size] = self.get(new)
                n += new.size
                self.update(new, 0.0)
        finally:
            self.update(chosen[:n], saved[:n])
        return chosen
