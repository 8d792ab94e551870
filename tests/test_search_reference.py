"""The compiled batched search against the plain-Python reference, on random synthetic models.

The synthetic model is a hash: the next latent is an integer hash of (latent, action id), and
reward, value and policy logits are read from random tables at that hash. Its "LSTM" state is
the value prefix itself (h = reward summed since the last reset), so a missing or extra reset
changes the value prefixes. Both implementations see exactly the same numbers: the batched
torch version and the per-node numpy version do the same float64 operations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xtra.search import (
    draw_randomness,
    reference_search,
    search,
    search_with_randomness,
)

_MOD = 2147483647  # 2^31 - 1: latent * 1103515245 stays inside int64


class HashModel:
    """Deterministic synthetic dynamics + prediction over integer latents."""

    def __init__(self, rng: np.random.Generator, policy_size: int, ties: str, dtype=np.float64):
        size = 97
        self.reward = rng.normal(size=size) * rng.choice([1e-3, 0.1, 1.0])
        self.value = rng.normal(size=size) * rng.choice([1e-3, 0.1, 1.0, 10.0])
        self.logits = rng.normal(size=(size, policy_size)) * 2.0
        if ties != "none":  # many exact ties in priors and values
            self.reward = np.round(self.reward)
            self.value = np.round(self.value)
            self.logits = np.round(self.logits / 2.0)
        if ties == "near":  # scores 1e-9..1e-7 apart: ties only through the 1e-6 tolerance
            self.reward += rng.normal(size=size) * 1e-8
            self.value += rng.normal(size=size) * 1e-8
            self.logits += rng.normal(size=(size, policy_size)) * 1e-8
        self.reward, self.value, self.logits = (
            x.astype(dtype) for x in (self.reward, self.value, self.logits)
        )
        self.t_reward, self.t_value, self.t_logits = map(
            torch.from_numpy, (self.reward, self.value, self.logits)
        )

    def batched(self, latent, lstm_state, action):
        """recurrent_fn for search(): latent [B, 1] int64, h and c [1, B, 1] float64."""
        h, c = lstm_state
        key = (latent[:, 0] * 1103515245 + action * 12345 + 1013904223) % _MOD
        idx = key % len(self.value)
        h1 = h + self.t_reward[idx].view(1, -1, 1)
        return key[:, None], (h1, c + 1.0), h1[0, :, 0], self.t_value[idx], self.t_logits[idx]

    def one(self, latent, lstm_state, action_id):
        """model_fn for reference_search(): one node, Python ints and numpy arrays."""
        h, c = lstm_state
        key = (latent * 1103515245 + action_id * 12345 + 1013904223) % _MOD
        idx = key % len(self.value)
        h1 = h + self.reward[idx]
        return key, (h1, c + 1.0), float(h1[0]), float(self.value[idx]), self.logits[idx]


def _random_case(rng: np.random.Generator):
    batch = int(rng.integers(1, 7))
    num_slots = int(rng.integers(1, 9))
    policy_size = 10
    legal = rng.random((batch, num_slots)) < rng.uniform(0.3, 1.0)
    legal[np.arange(batch), rng.integers(0, num_slots, batch)] = True
    if batch > 1:  # one row with a single legal action
        legal[0] = False
        legal[0, rng.integers(0, num_slots)] = True
    action_ids = rng.integers(0, policy_size, (batch, num_slots))
    action_ids[~legal] = -1  # never read
    model = HashModel(rng, policy_size, ties=str(rng.choice(["none", "exact", "near"])))
    kwargs = dict(
        num_simulations=int(rng.integers(1, 31)),
        c1=1.25,
        c2=float(rng.choice([19652.0, 5.0])),
        discount=float(rng.choice([0.0, 0.5, 0.997**4, 1.0])),
        value_delta_max=float(rng.choice([0.01, 0.0, 1.0])),
        lstm_horizon=int(rng.choice([1, 2, 5])),
        exploration_fraction=0.25,
        faithful_minmax_parent=bool(rng.random() < 0.5),
        faithful_parent_q_leak=bool(rng.random() < 0.5),
    )
    # The compiled search only: numba threads over roots or one thread (same result).
    parallel = bool(rng.random() < 0.05)
    roots = dict(
        latents=rng.integers(0, _MOD, batch),
        logits=rng.normal(size=(batch, policy_size)),
        legal=legal,
        action_ids=action_ids,
    )
    return model, roots, kwargs, parallel


def _run_both(model, roots, kwargs, randomness, parallel=None):
    batch = len(roots["latents"])
    zeros = torch.zeros(1, batch, 1, dtype=torch.float64)
    result = search_with_randomness(
        model.batched,
        torch.from_numpy(roots["latents"])[:, None],
        (zeros, zeros.clone()),
        torch.from_numpy(roots["logits"]),
        roots["legal"],
        roots["action_ids"],
        randomness,
        **kwargs,
        parallel=parallel,
    )
    visits, values = reference_search(
        model.one,
        [int(x) for x in roots["latents"]],
        [(np.zeros(1), np.zeros(1)) for _ in range(batch)],
        roots["logits"],
        roots["legal"],
        roots["action_ids"],
        noise=randomness.noise,
        tie_keys=randomness.tie_keys,
        **kwargs,
    )
    return result, visits, values


def test_compiled_search_matches_reference_on_random_models():
    rng = np.random.default_rng(12345)
    for case in range(400):
        model, roots, kwargs, parallel = _random_case(rng)
        randomness = draw_randomness(
            rng,
            roots["legal"],
            num_simulations=kwargs["num_simulations"],
            add_noise=bool(rng.random() < 0.5),
            dirichlet_alpha=0.3,
            tie_break=str(rng.choice(["random", "lowest"])),
        )
        result, visits, values = _run_both(model, roots, kwargs, randomness, parallel)
        where = f"case {case}: {kwargs}, parallel={parallel}"
        np.testing.assert_array_equal(result.visit_counts, visits, err_msg=where)
        np.testing.assert_allclose(result.root_values, values, rtol=1e-5, atol=1e-5, err_msg=where)
        assert (result.visit_counts.sum(axis=1) == kwargs["num_simulations"]).all(), where
        assert (result.visit_counts[~roots["legal"]] == 0).all(), where


def _fixed_case(seed: int, **overrides):
    rng = np.random.default_rng(seed)
    batch, num_slots, policy_size = 5, 6, 10
    legal = np.ones((batch, num_slots), bool)
    legal[1, 2:] = False
    legal[2, [0, 3]] = False
    legal[3] = False
    legal[3, 4] = True
    action_ids = np.tile(rng.permutation(policy_size)[:num_slots], (batch, 1))
    model = HashModel(rng, policy_size, ties="none")
    kwargs = dict(
        num_simulations=25,
        c1=1.25,
        c2=19652.0,
        discount=0.997**4,
        value_delta_max=0.01,
        lstm_horizon=5,
        exploration_fraction=0.25,
    )
    kwargs.update(overrides)
    roots = dict(
        latents=rng.integers(0, _MOD, batch),
        logits=rng.normal(size=(batch, policy_size)),
        legal=legal,
        action_ids=action_ids,
    )
    return model, roots, kwargs


def _search(model, roots, kwargs, rng, rows=slice(None), **extra):
    latents = roots["latents"][rows]
    batch = len(latents)
    zeros = torch.zeros(1, batch, 1, dtype=torch.float64)
    return search(
        model.batched,
        torch.from_numpy(latents)[:, None],
        (zeros, zeros.clone()),
        torch.from_numpy(roots["logits"][rows]),
        roots["legal"][rows],
        roots["action_ids"][rows],
        rng=rng,
        **kwargs,
        **extra,
    )


def test_batch_independence():
    """A root's result does not depend on the other roots in the batch (tie_break lowest)."""
    model, roots, kwargs = _fixed_case(0)
    extra = dict(tie_break="lowest", dirichlet_alpha=0.3, add_noise=False)
    full = _search(model, roots, kwargs, np.random.default_rng(0), **extra)
    for b in range(len(roots["latents"])):
        alone = _search(
            model, roots, kwargs, np.random.default_rng(0), rows=slice(b, b + 1), **extra
        )
        np.testing.assert_array_equal(full.visit_counts[b : b + 1], alone.visit_counts)
        np.testing.assert_array_equal(full.root_values[b : b + 1], alone.root_values)
    # Reversing the batch permutes the results and nothing else.
    rev = {k: v[::-1].copy() for k, v in roots.items()}
    backwards = _search(model, rev, kwargs, np.random.default_rng(0), **extra)
    np.testing.assert_array_equal(backwards.visit_counts[::-1], full.visit_counts)


def test_same_seed_same_result_and_seed_matters():
    model, roots, kwargs = _fixed_case(1)
    extra = dict(tie_break="random", dirichlet_alpha=0.3, add_noise=True)
    a = _search(model, roots, kwargs, np.random.default_rng(7), **extra)
    b = _search(model, roots, kwargs, np.random.default_rng(7), **extra)
    np.testing.assert_array_equal(a.visit_counts, b.visit_counts)
    np.testing.assert_array_equal(a.root_values, b.root_values)
    others = [
        _search(model, roots, kwargs, np.random.default_rng(seed), **extra).visit_counts
        for seed in range(8, 12)
    ]
    assert any((o != a.visit_counts).any() for o in others)


def test_faithful_parent_q_leak_changes_nothing():
    """D-EZ-2 is inert in EZ HEAD: a root only reads the leaked value while none of its children
    is visited, i.e. in simulation 0, where every root's child scores are equal (N_total = 0
    removes the prior term, and all take the same mean Q) and the leaked value is itself 0."""
    for seed in range(5):
        model, roots, kwargs = _fixed_case(seed)
        extra = dict(tie_break="random", dirichlet_alpha=0.3, add_noise=True)
        fixed = _search(model, roots, kwargs, np.random.default_rng(seed), **extra)
        leak = _search(
            model,
            roots,
            kwargs,
            np.random.default_rng(seed),
            faithful_parent_q_leak=True,
            **extra,
        )
        np.testing.assert_array_equal(fixed.visit_counts, leak.visit_counts)
        np.testing.assert_array_equal(fixed.root_values, leak.root_values)


def test_faithful_minmax_parent_is_wired():
    """D-EZ-1 changes the normalisation bounds and so, sometimes, the search."""
    differs = False
    for seed in range(10):
        model, roots, kwargs = _fixed_case(seed, lstm_horizon=2)
        extra = dict(tie_break="lowest", dirichlet_alpha=0.3, add_noise=False)
        fixed = _search(model, roots, kwargs, np.random.default_rng(0), **extra)
        ez = _search(
            model, roots, kwargs, np.random.default_rng(0), faithful_minmax_parent=True, **extra
        )
        differs |= bool((fixed.visit_counts != ez.visit_counts).any())
    assert differs


@pytest.mark.parametrize("tie_break", ["random", "lowest"])
def test_reference_agrees_on_a_fixed_batch(tie_break):
    model, roots, kwargs = _fixed_case(3, num_simulations=50)
    randomness = draw_randomness(
        np.random.default_rng(3),
        roots["legal"],
        num_simulations=50,
        add_noise=True,
        dirichlet_alpha=0.3,
        tie_break=tie_break,
    )
    result, visits, values = _run_both(model, roots, kwargs, randomness)
    np.testing.assert_array_equal(result.visit_counts, visits)
    np.testing.assert_allclose(result.root_values, values, rtol=1e-12, atol=1e-12)


def test_parallel_kernels_equal_serial_kernels():
    """numba's threads (prange over roots) change nothing, also on a large batch."""
    rng = np.random.default_rng(5)
    model = HashModel(rng, 18, ties="exact")
    batch = 300
    legal = rng.random((batch, 18)) < 0.7
    legal[:, 0] = True
    roots = dict(
        latents=rng.integers(0, _MOD, batch),
        logits=rng.normal(size=(batch, 18)),
        legal=legal,
        action_ids=np.tile(np.arange(18), (batch, 1)),
    )
    kwargs = dict(
        num_simulations=30,
        c1=1.25,
        c2=19652.0,
        discount=0.997**4,
        value_delta_max=0.01,
        lstm_horizon=5,
        exploration_fraction=0.25,
    )
    randomness = draw_randomness(
        rng, legal, num_simulations=30, add_noise=True, dirichlet_alpha=0.3, tie_break="random"
    )
    zeros = torch.zeros(1, batch, 1, dtype=torch.float64)
    results = [
        search_with_randomness(
            model.batched,
            torch.from_numpy(roots["latents"])[:, None],
            (zeros, zeros.clone()),
            torch.from_numpy(roots["logits"]),
            legal,
            roots["action_ids"],
            randomness,
            **kwargs,
            faithful_minmax_parent=faithful,
            parallel=parallel,
        )
        for faithful in (False, True)
        for parallel in (False, True)
    ]
    for a, b in [(0, 1), (2, 3)]:
        np.testing.assert_array_equal(results[a].visit_counts, results[b].visit_counts)
        np.testing.assert_array_equal(results[a].root_values, results[b].root_values)


def test_reference_agrees_with_float32_model_outputs():
    """The network's outputs are float32 (the kernel's main specialisation); the reference sees
    the same float32 numbers (its "LSTM" sums in float32 too)."""
    rng = np.random.default_rng(11)
    model = HashModel(rng, 10, ties="none", dtype=np.float32)
    batch, num_slots = 4, 7
    legal = rng.random((batch, num_slots)) < 0.7
    legal[:, 0] = True
    latents = rng.integers(0, _MOD, batch)
    logits = rng.normal(size=(batch, 10)).astype(np.float32)
    action_ids = rng.integers(0, 10, (batch, num_slots))
    kwargs = dict(
        num_simulations=40,
        c1=1.25,
        c2=19652.0,
        discount=0.997**4,
        value_delta_max=0.01,
        lstm_horizon=3,
        exploration_fraction=0.25,
    )
    randomness = draw_randomness(
        rng, legal, num_simulations=40, add_noise=True, dirichlet_alpha=0.3, tie_break="random"
    )
    zeros = torch.zeros(1, batch, 1, dtype=torch.float32)
    result = search_with_randomness(
        model.batched,
        torch.from_numpy(latents)[:, None],
        (zeros, zeros.clone()),
        torch.from_numpy(logits),
        legal,
        action_ids,
        randomness,
        **kwargs,
    )
    f32 = np.zeros(1, np.float32)
    visits, values = reference_search(
        model.one,
        [int(x) for x in latents],
        [(f32.copy(), f32.copy()) for _ in range(batch)],
        logits,
        legal,
        action_ids,
        noise=randomness.noise,
        tie_keys=randomness.tie_keys,
        **kwargs,
    )
    np.testing.assert_array_equal(result.visit_counts, visits)
    np.testing.assert_allclose(result.root_values, values, rtol=1e-12, atol=1e-12)
