"""Hand-worked searches, edge cases and action selection (spec A5, A6.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from xtra.act.select import select_action, temperature_at
from xtra.config import SearchConfig
from xtra.search import reference_search, search, search_kwargs

C2 = 19652.0


def _run(recurrent_fn, model_fn, root_latent, root_logits, legal, action_ids, **kwargs):
    """The compiled search and the reference on the same inputs; returns both results."""
    batch = len(root_latent)
    h = torch.zeros(1, batch, 1, dtype=torch.float64)
    defaults = dict(
        c1=1.25,
        c2=C2,
        value_delta_max=0.01,
        tie_break="lowest",
        dirichlet_alpha=0.3,
        exploration_fraction=0.25,
        add_noise=False,
    )
    defaults.update(kwargs)
    result = search(
        recurrent_fn,
        torch.tensor(root_latent, dtype=torch.float64)[:, None],
        (h, h.clone()),
        torch.from_numpy(np.asarray(root_logits, dtype=np.float64)),
        np.asarray(legal),
        np.asarray(action_ids),
        rng=np.random.default_rng(0),
        **defaults,
    )
    ref_kwargs = {
        k: v for k, v in defaults.items() if k not in ("tie_break", "dirichlet_alpha", "add_noise")
    }
    visits, values = reference_search(
        model_fn,
        [float(x) for x in root_latent],
        [(np.zeros(1), np.zeros(1)) for _ in range(batch)],
        np.asarray(root_logits, dtype=np.float64),
        np.asarray(legal),
        np.asarray(action_ids),
        noise=None,
        tie_keys=None,
        **ref_kwargs,
    )
    return result, visits, values


# --------------------------------------------------------------------------- hand-worked trees


def test_bandit_discount_zero_by_hand():
    """Three actions with rewards (0.1, 0.2, 0.9) and priors (0.2, 0.3, 0.5) at every node,
    discount 0 (so Q = reward) and 4 simulations; the value prefix is the path's reward sum."""
    rewards = [0.1, 0.2, 0.9]
    logits = np.log([0.2, 0.3, 0.5])

    def recurrent_fn(latent, lstm_state, action):
        vp = latent[:, 0] + torch.tensor(rewards, dtype=torch.float64)[action]
        return (
            vp[:, None],
            lstm_state,
            vp,
            torch.zeros_like(vp),
            torch.tensor(logits).expand(3)[None].repeat(len(vp), 1),
        )

    def model_fn(latent, lstm_state, action_id):
        vp = latent + rewards[action_id]
        return vp, lstm_state, vp, 0.0, logits

    result, visits, values = _run(
        recurrent_fn,
        model_fn,
        [0.0],
        [logits],
        [[True, True, True]],
        [[0, 1, 2]],
        num_simulations=4,
        discount=0.0,
        lstm_horizon=5,
    )
    # pb(n) = (log((n + c2 + 1)/c2) + 1.25) * sqrt(n); score = pb(n) * P / (1 + N) + norm(Q).
    # Sim 0: root N = 1 -> n = 0: all prior terms 0; every child takes the root's mean Q = 0
    #   (no visited child, D-EZ-2 fix); equal scores -> lowest slot: a0. Q(a0) = 0.1.
    #   Root W = 0.1 (G = r(a0) + 0 * V). Min-max {0.1}: max = min -> normalize returns q.
    # Sim 1: n = 1, pb = 1.2501; mean Q = 0.1 -> unvisited value score 0.1.
    #   a0: 1.2501 * 0.2 / 2 + 0.1 = 0.225; a1: 1.2501 * 0.3 + 0.1 = 0.475;
    #   a2: 1.2501 * 0.5 + 0.1 = 0.725 -> a2, Q = 0.9. Root W = 1.0. Min-max [0.1, 0.9].
    # Sim 2: n = 2, pb = 1.2502 * sqrt(2) = 1.768; mean Q = (0.1 + 0.9) / 2 = 0.5;
    #   norm(q) = (q - 0.1) / 0.8. a0: 0.177 + 0 = 0.177; a1: 0.530 + 0.5 = 1.030;
    #   a2: 1.768 * 0.5 / 2 + 1 = 1.442 -> a2 (expanded): at a2, n = 0 and mean Q =
    #   (parent mean 0.5 + nothing) / 1 = 0.5 for all -> tie -> a2.a0 (reward 0.1).
    #   Backup: leaf W += 0; a2: W += 0.1 + 0 -> 1.0; root W += r(a2) = 0.9 -> 1.9.
    # Sim 3: n = 3, pb = 1.2502 * sqrt(3) = 2.165; mean Q = (0.1 + Q(a2) = 0.9 + 0) / 2 = 0.5.
    #   a0: 0.217 + 0 = 0.217; a1: 0.650 + 0.5 = 1.150; a2: 2.165 * 0.5 / 3 + 1 = 1.361 -> a2.
    #   At a2 (N = 2, n = 1, pb = 1.2501): mean Q = (0.5 + Q(a2.a0) = 0.1) / 2 = 0.3.
    #   a2.a0: 0.125 + norm(0.1) = 0.125; a2.a1: 0.375 + norm(0.3) = 0.625;
    #   a2.a2: 0.625 + 0.25 = 0.875 -> a2.a2 (reward 0.9). Root W += 0.9 -> 2.8.
    # Visits (1, 0, 3); root value 2.8 / (4 + 1) = 0.56.
    np.testing.assert_array_equal(result.visit_counts, [[1, 0, 3]])
    np.testing.assert_array_equal(visits, [[1, 0, 3]])
    np.testing.assert_allclose(result.root_values, [0.56], rtol=1e-12)
    np.testing.assert_allclose(values, [0.56], rtol=1e-12)
    np.testing.assert_allclose(result.visit_policy, [[0.25, 0.0, 0.75]])


def test_chain_value_prefix_and_lstm_reset_by_hand():
    """One legal slot (slot 1 of 3, model action id 7): the tree is a chain. Node at depth d has
    reward d and value 10 d; its "LSTM" h is the value prefix (reward summed since the last
    reset), zeroed at depths 2 and 4 (horizon 2). Discount 0.5, 4 simulations."""
    seen_h = []

    def recurrent_fn(latent, lstm_state, action):
        assert action.tolist() == [7]
        h, c = lstm_state
        seen_h.append(float(h[0, 0, 0]))
        depth = latent[:, 0] + 1
        vp = h[0, :, 0] + depth
        return depth[:, None], (vp.view(1, -1, 1), c), vp, 10 * depth, torch.zeros(1, 8)

    def model_fn(latent, lstm_state, action_id):
        h, c = lstm_state
        depth = latent + 1
        vp = float(h[0]) + depth
        return depth, (np.array([vp]), c), vp, 10 * depth, np.zeros(8)

    result, visits, values = _run(
        recurrent_fn,
        model_fn,
        [0.0],
        [np.zeros(8)],
        [[False, True, False]],
        [[0, 7, 0]],
        num_simulations=4,
        discount=0.5,
        lstm_horizon=2,
    )
    # Value prefixes: VP1 = 0 + 1 = 1; VP2 = 1 + 2 = 3 (n2 is reset: LSTM zeroed, is_reset);
    # VP3 = 0 + 3 = 3; VP4 = 3 + 4 = 7 (n4 reset). Rewards: r1 = VP1 - 0 = 1,
    # r2 = VP2 - VP1 = 2, r3 = VP3 = 3 (parent reset), r4 = VP4 - VP3 = 4.
    # Sim 0: n1 W = 10; G = r1 + 0.5 * 10 = 6 -> root W = 6.
    # Sim 1: n2 W = 20; G = r2 + 0.5 * 20 = 12 -> n1 W = 22; G = 1 + 6 = 7 -> root W = 13.
    # Sim 2: n3 W = 30; G = r3 + 15 = 18 -> n2 W = 38; G = 2 + 9 = 11 -> n1 W = 33;
    #        G = 1 + 5.5 = 6.5 -> root W = 19.5.
    # Sim 3: n4 W = 40; G = r4 + 20 = 24 -> n3 W = 54; G = 3 + 12 = 15 -> n2 W = 53;
    #        G = 2 + 7.5 = 9.5 -> n1 W = 42.5; G = 1 + 4.75 = 5.75 -> root W = 25.25.
    # Root value 25.25 / 5 = 5.05; all 4 visits on slot 1.
    np.testing.assert_array_equal(result.visit_counts, [[0, 4, 0]])
    np.testing.assert_array_equal(visits, [[0, 4, 0]])
    np.testing.assert_allclose(result.root_values, [5.05], rtol=1e-12)
    np.testing.assert_allclose(values, [5.05], rtol=1e-12)
    # The LSTM state read when expanding n1..n4: root 0, n1's 1, n2's zeroed 0, n3's 3.
    assert seen_h == [0.0, 1.0, 0.0, 3.0]


# --------------------------------------------------------------------------- edge cases


def _uniform_model(num_actions: int, rewards=None, logits=None):
    rewards = np.zeros(num_actions) if rewards is None else np.asarray(rewards, float)
    logits = np.zeros(num_actions) if logits is None else np.asarray(logits, float)
    t_rewards, t_logits = torch.from_numpy(rewards), torch.from_numpy(logits)

    def recurrent_fn(latent, lstm_state, action):
        vp = t_rewards[action]
        return latent, lstm_state, vp, torch.zeros_like(vp), t_logits.repeat(len(vp), 1)

    return recurrent_fn


def _search_one(recurrent_fn, legal, root_logits, **kwargs):
    legal = np.asarray(legal)
    batch, num_slots = legal.shape
    h = torch.zeros(1, batch, 4)
    defaults = dict(
        num_simulations=20,
        c1=1.25,
        c2=C2,
        discount=0.997**4,
        value_delta_max=0.01,
        lstm_horizon=5,
        tie_break="random",
        dirichlet_alpha=0.3,
        exploration_fraction=0.25,
        add_noise=True,
    )
    defaults.update(kwargs)
    return search(
        recurrent_fn,
        torch.zeros(batch, 3),
        (h, h.clone()),
        torch.as_tensor(root_logits, dtype=torch.float32),
        legal,
        np.tile(np.arange(num_slots), (batch, 1)),
        rng=np.random.default_rng(0),
        **defaults,
    )


def test_one_legal_action():
    result = _search_one(_uniform_model(4), [[False, False, True, False]], np.zeros((1, 4)))
    np.testing.assert_array_equal(result.visit_counts, [[0, 0, 20, 0]])
    np.testing.assert_array_equal(result.visit_policy, [[0.0, 0.0, 1.0, 0.0]])


def test_all_visits_on_one_child():
    """Slot 0 has prior ~1 and the best reward: once visited (simulation 0 picks the lowest slot
    of the all-equal first scores), the others' prior terms are ~0 and their value score (the
    root's mean Q = Q(slot 0)) never beats slot 0's."""
    logits = [0.0, -1e4, -1e4]
    result = _search_one(
        _uniform_model(3, rewards=[1.0, 0.0, 0.0], logits=logits),
        [[True, True, True]],
        [logits],
        tie_break="lowest",
        add_noise=False,
        num_simulations=30,
    )
    np.testing.assert_array_equal(result.visit_counts, [[30, 0, 0]])


def test_illegal_slots_never_visited_and_counts_sum():
    legal = np.array([[True, False, True, True, False], [False, True, False, False, False]])
    result = _search_one(_uniform_model(5), legal, np.zeros((2, 5)), num_simulations=17)
    assert (result.visit_counts[~legal] == 0).all()
    np.testing.assert_array_equal(result.visit_counts.sum(axis=1), [17, 17])
    np.testing.assert_allclose(result.visit_policy.sum(axis=1), 1.0)


def test_network_output_object_is_accepted():
    """recurrent_fn may return an object with named fields (the model's NetworkOutput)."""

    @dataclass
    class Output:
        latent: torch.Tensor
        lstm_state: tuple
        value_prefix: torch.Tensor
        value: torch.Tensor
        value_logits: torch.Tensor
        policy_logits: torch.Tensor

    tuple_fn = _uniform_model(3, rewards=[0.5, 0.0, 1.0], logits=[0.0, 1.0, 2.0])

    def object_fn(latent, lstm_state, action):
        lat, state, vp, v, logits = tuple_fn(latent, lstm_state, action)
        # [B, 1] scalars are accepted too
        return Output(lat, state, vp[:, None], v[:, None], torch.zeros(1), logits)

    kwargs = dict(tie_break="lowest", add_noise=False)
    a = _search_one(tuple_fn, [[True, True, True]], [[0.0, 1.0, 2.0]], **kwargs)
    b = _search_one(object_fn, [[True, True, True]], [[0.0, 1.0, 2.0]], **kwargs)
    np.testing.assert_array_equal(a.visit_counts, b.visit_counts)
    np.testing.assert_array_equal(a.root_values, b.root_values)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="no legal action"):
        _search_one(_uniform_model(2), [[True, True], [False, False]], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="action_ids"):
        search(
            _uniform_model(2),
            torch.zeros(1, 3),
            (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)),
            torch.zeros(1, 2),
            np.ones((1, 2), bool),
            np.array([[0, 5]]),
            rng=np.random.default_rng(0),
            **search_kwargs(SearchConfig(), 0.99),
            add_noise=False,
        )


def test_search_kwargs_from_config():
    cfg = SearchConfig(num_simulations=7, tie_break="lowest")
    kwargs = search_kwargs(cfg, discount=0.9)
    result = _search_one(
        _uniform_model(3), [[True, True, True]], np.zeros((1, 3)), **kwargs, add_noise=True
    )
    assert result.visit_counts.sum() == 7


# --------------------------------------------------------------------------- acting


def test_temperature_zero_and_deterministic_are_argmax_lowest():
    counts = np.array([[3, 7, 7, 1], [0, 0, 0, 5], [4, 4, 4, 4]])
    expected = [1, 3, 0]
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(select_action(counts, 0.0, rng, deterministic=False), expected)
    np.testing.assert_array_equal(select_action(counts, 1.0, rng, deterministic=True), expected)


def test_deterministic_ties_go_to_the_higher_tie_score():
    counts = np.array([[3, 7, 7, 1], [0, 0, 0, 5], [4, 4, 4, 4], [2, 2, 1, 0]])
    # Row 0: slots 1 and 2 tie, 2 scores higher; row 1: no tie, the low-scored slot 3 still wins;
    # row 2: a four-way tie goes to the best score; row 3: equal scores fall back to the lowest.
    scores = np.array([[9, 0, 1, 9], [5, 5, 5, -5], [0, 1, 3, 2], [1, 1, 5, 5]], dtype=float)
    got = select_action(
        counts, 1.0, np.random.default_rng(0), deterministic=True, tie_scores=scores
    )
    np.testing.assert_array_equal(got, [2, 3, 2, 0])
    with pytest.raises(ValueError, match="tie_scores"):
        select_action(counts, 1.0, np.random.default_rng(0), True, tie_scores=scores[:, :2])


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.25])
def test_select_action_distribution(temperature):
    counts = np.array([1, 2, 0, 3, 4])
    rows = 40000
    actions = select_action(
        np.tile(counts, (rows, 1)), temperature, np.random.default_rng(1), deterministic=False
    )
    p = counts ** (1 / temperature) / (counts ** (1 / temperature)).sum()
    freq = np.bincount(actions, minlength=5) / rows
    assert freq[2] == 0.0  # zero visits -> never chosen
    # Each frequency within 5 standard errors of its probability.
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / rows) + 1e-12)


def test_select_action_one_nonzero_and_tiny_temperature():
    counts = np.array([[0, 0, 9, 0], [50, 49, 0, 0]])
    actions = select_action(counts, 1e-3, np.random.default_rng(0), deterministic=False)
    np.testing.assert_array_equal(actions, [2, 0])  # (49/50)^1000 ~ 2e-9


def test_temperature_at():
    temps, steps = (1.0, 0.5, 0.25), (50000, 75000)
    assert temperature_at(0, temps, steps) == 1.0
    assert temperature_at(49999, temps, steps) == 1.0
    assert temperature_at(50000, temps, steps) == 0.5
    assert temperature_at(75000, temps, steps) == 0.25
    assert math.isclose(temperature_at(10**6, temps, steps), 0.25)


def test_no_roots():
    result = _search_one(_uniform_model(3), np.zeros((0, 3), bool), np.zeros((0, 3)))
    assert result.visit_counts.shape == (0, 3) and result.root_values.shape == (0,)


def test_step_kernel_takes_the_tree_fields_in_order():
    """The kernel receives ``*tree``: its leading parameters must be Tree's fields, in order."""
    import inspect

    from xtra.search import tree as tree_module

    params = list(inspect.signature(tree_module._step_kernel).parameters)
    assert params[: len(tree_module.Tree._fields)] == list(tree_module.Tree._fields)
