"""Sum tree: prefix search vs cumsum + searchsorted, updates, and successive sampling vs exact
without-replacement probabilities."""

import itertools

import numpy as np
import pytest

from xtra.data.sumtree import SumTree
from xtra.errors import XtraError


def successive_sampling_probs(w: np.ndarray, b: int) -> dict[tuple[int, ...], float]:
    """Exact probability of every ordered draw of ``b`` distinct items, drawing one at a time
    with probability proportional to ``w`` among the items not drawn yet."""
    out = {}
    for seq in itertools.permutations(range(len(w)), b):
        p, left = 1.0, w.sum()
        for i in seq:
            p *= w[i] / left
            left -= w[i]
        out[seq] = p
    return out


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000])
def test_find_matches_cumsum_searchsorted(n):
    rng = np.random.default_rng(n)
    w = rng.random(n) * (rng.random(n) > 0.3)  # about 30% zero leaves
    w[rng.integers(n)] = 0.5  # at least one positive
    tree = SumTree(n)
    tree.update(np.arange(n), w)
    assert tree.total == pytest.approx(w.sum(), rel=1e-12)
    u = rng.random(5000) * w.sum()
    expected = np.searchsorted(np.cumsum(w), u, side="right")
    got = tree.find(u)
    # Rounding can only matter for u within ~1e-12 of a boundary: none of 5000 random draws.
    np.testing.assert_array_equal(got, expected)
    assert np.all(w[got] > 0)


def test_find_never_returns_a_zero_leaf_at_the_top():
    tree = SumTree(8)
    w = np.array([0.3, 0.0, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0])
    tree.update(np.arange(8), w)
    got = tree.find(np.array([tree.total, np.nextafter(tree.total, 0), 0.0, 0.3, 0.5]))
    np.testing.assert_array_equal(got, [3, 3, 0, 2, 3])


def test_updates_and_rebuild_are_bit_identical():
    rng = np.random.default_rng(0)
    n = 300
    tree = SumTree(n)
    leaves = np.zeros(tree.num_leaves)
    for _ in range(50):
        idx = rng.integers(0, n, size=rng.integers(1, 20))
        vals = rng.random(idx.size)
        tree.update(idx, vals)
        leaves[idx] = vals  # the last of repeated indices wins, as in the tree
    other = SumTree(n)
    other.rebuild(leaves)
    np.testing.assert_array_equal(tree.nodes, other.nodes)
    np.testing.assert_array_equal(tree.get(np.arange(n)), leaves[:n])


def test_update_rejects_negative_weights():
    tree = SumTree(4)
    with pytest.raises(ValueError):
        tree.update([0], [-1.0])


def test_sample_distinct_ordered_distribution_matches_exact():
    w = np.array([0.1, 0.5, 1.0, 2.4])
    tree = SumTree(len(w))
    tree.update(np.arange(len(w)), w)
    exact = successive_sampling_probs(w, 2)
    rng = np.random.default_rng(1)
    draws = 20000
    counts = dict.fromkeys(exact, 0)
    for _ in range(draws):
        counts[tuple(tree.sample_distinct(2, rng))] += 1
    for seq, p in exact.items():
        sd = np.sqrt(p * (1 - p) / draws)
        assert abs(counts[seq] / draws - p) < 4.5 * sd + 1e-3, (seq, counts[seq] / draws, p)
    # The weights are restored after every draw.
    np.testing.assert_array_equal(tree.get(np.arange(len(w))), w)


def test_sample_distinct_inclusion_matches_exact():
    w = np.array([3.0, 0.2, 1.0, 0.0, 0.7, 5.0, 0.05])
    tree = SumTree(len(w))
    tree.update(np.arange(len(w)), w)
    b = 3
    inclusion = np.zeros(len(w))
    for seq, p in successive_sampling_probs(w, b).items():
        inclusion[list(seq)] += p
    rng = np.random.default_rng(2)
    draws = 20000
    counts = np.zeros(len(w))
    for _ in range(draws):
        s = tree.sample_distinct(b, rng)
        assert len(set(s.tolist())) == b
        counts[s] += 1
    freq = counts / draws
    sd = np.sqrt(inclusion * (1 - inclusion) / draws)
    assert np.all(np.abs(freq - inclusion) < 4.5 * sd + 1e-3), (freq, inclusion)
    assert counts[3] == 0  # zero weight: never drawn


def test_sample_distinct_needs_enough_positive_leaves():
    tree = SumTree(4)
    w = np.array([1.0, 0.0, 2.0, 0.0])
    tree.update(np.arange(4), w)
    with pytest.raises(XtraError):
        tree.sample_distinct(3, np.random.default_rng(0))
    np.testing.assert_array_equal(tree.get(np.arange(4)), w)
    assert sorted(tree.sample_distinct(2, np.random.default_rng(0)).tolist()) == [0, 2]


def test_single_leaf_and_non_power_of_two():
    tree = SumTree(1)
    tree.update([0], [2.0])
    assert tree.total == 2.0
    np.testing.assert_array_equal(tree.find(np.array([0.0, 1.9])), [0, 0])
    tree = SumTree(5)
    assert tree.num_leaves == 8
    tree.update(np.arange(5), np.ones(5))
    assert tree.total == 5.0
