"""The completed-Q improved policy against hand-worked values (Danihelka et al. 2022)."""

from __future__ import annotations

import numpy as np
import pytest

from xtra.search.improved_policy import completed_q_policy, mixed_value


def test_mixed_value_by_hand():
    prior = np.array([[0.5, 0.25, 0.25]])
    visits = np.array([[2, 0, 2]])
    q = np.array([[1.0, 9.0, 3.0]])  # the unvisited 9.0 is ignored
    # weighted q = (0.5 * 1 + 0.25 * 3) / 0.75 = 5/3; v_mix = (0.4 + 4 * 5/3) / 5
    assert mixed_value(np.array([0.4]), prior, visits, q)[0] == pytest.approx((0.4 + 20 / 3) / 5)
    assert mixed_value(np.array([0.4]), prior, np.zeros((1, 3)), q)[0] == pytest.approx(0.4)


def test_completed_q_policy_by_hand():
    logits = np.log(np.array([[0.5, 0.25, 0.25, 1.0]]))
    legal = np.array([[True, True, True, False]])
    visits = np.array([[3, 1, 0, 0]])
    q = np.array([[0.2, 1.0, 0.0, 5.0]])
    v = np.array([0.5])
    got = completed_q_policy(logits, visits, q, v, legal, c_visit=50.0, c_scale=0.1)
    prior = np.array([0.5, 0.25, 0.25])
    v_mix = (0.5 + 4 * (0.5 * 0.2 + 0.25 * 1.0) / 0.75) / 5
    completed = np.array([0.2, 1.0, v_mix])
    scaled = (completed - completed.min()) / (completed.max() - completed.min())
    z = np.log(prior) + (50 + 3) * 0.1 * scaled
    want = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(got[0, :3], want, rtol=1e-12)
    assert got[0, 3] == 0.0


def test_equal_q_gives_the_prior_and_better_q_gets_more_mass():
    logits = np.zeros((2, 3))
    legal = np.ones((2, 3), bool)
    visits = np.array([[1, 1, 1], [4, 2, 2]])
    same = completed_q_policy(logits[:1], visits[:1], np.full((1, 3), 0.3), np.zeros(1), legal[:1])
    np.testing.assert_allclose(same, np.full((1, 3), 1 / 3))
    q = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    got = completed_q_policy(logits, visits, q, np.zeros(2), legal)
    assert got[1, 0] > 0.99  # a clear Q gap dominates with sigma's scale (50 + 4) * 0.1
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_search_child_q_backs_up_to_the_root_value():
    """Every simulation's root return is r + gamma * (the child's subtree return), so the root's
    W = sum of returns = sum over children of N(a) * Q(a), and root_values = W / (S + 1)."""
    import torch

    from xtra.config import make_config
    from xtra.learn.loop import make_planner
    from xtra.model.networks import EfficientZeroNet

    cfg = make_config("tiny", overrides=["model.init_zero=false", "search.num_simulations=12"])
    torch.manual_seed(0)
    model = EfficientZeroNet(cfg.model, (12, 10, 10))
    planner = make_planner(model, cfg, torch.device("cpu"), amp=False)
    obs = np.random.default_rng(0).integers(0, 255, (3, 12, 10, 10), dtype=np.uint8)
    plan = planner.plan(obs, np.array([0, 3, 4]), add_noise=False, rng=np.random.default_rng(0))
    assert plan.child_q.shape == plan.visit_counts.shape
    assert (plan.child_q[plan.visit_counts == 0] == 0).all()
    backed_up = (plan.visit_counts * plan.child_q).sum(axis=1) / (12 + 1)
    np.testing.assert_allclose(backed_up, plan.root_values, rtol=1e-5, atol=1e-6)
    target = completed_q_policy(
        plan.prior_logits,
        plan.visit_counts,
        plan.child_q,
        plan.network_values,
        np.ones(plan.visit_counts.shape, dtype=bool),
    )
    np.testing.assert_allclose(target.sum(axis=1), 1.0)


def test_draw_from_policy_matches_the_policy():
    from xtra.act.select import draw_from_policy

    p = np.array([0.1, 0.0, 0.6, 0.3])
    rows = 40000
    got = draw_from_policy(np.tile(p, (rows, 1)), np.random.default_rng(2))
    freq = np.bincount(got, minlength=4) / rows
    assert freq[1] == 0.0  # a zero-probability slot is never drawn
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / rows) + 1e-12)
    rng = np.random.default_rng(0)
    assert draw_from_policy(np.array([[0.2, 0.5, 0.3]]), rng, deterministic=True).tolist() == [1]


class _FixedPlanner:
    """A planner whose every root has the same hand-set search result: visits favour slot 0,
    the searched Q-values favour slot 2."""

    def plan(self, obs, legal_actions, *, add_noise, rng):
        from xtra.act.planner import PlanResult

        n, a = len(obs), len(legal_actions)
        visits = np.zeros((n, a), dtype=np.int64)
        visits[:, 0], visits[:, 2] = 6, 2
        q = np.zeros((n, a))
        q[:, 0], q[:, 2] = -0.5, 0.8
        return PlanResult(
            visit_counts=visits,
            visit_policy=visits / visits.sum(axis=1, keepdims=True),
            root_values=np.zeros(n),
            network_values=np.zeros(n, dtype=np.float32),
            prior_logits=np.zeros((n, a), dtype=np.float32),
            child_q=q,
        )


@pytest.mark.parametrize("selection", ["visits", "improved_policy"])
def test_self_play_acts_by_visits_or_by_the_improved_policy(selection):
    """search.action_selection: the same search result, acted on two ways. Visits draw slot 0
    three times in four and never the unvisited slot 1; the improved policy
    softmax(0 + sigma(completed Q)) follows the Q-values to slot 2. By hand: completed
    Q = (-0.5, v_mix, 0.8), v_mix = (0 + 8 * 0.15) / 9 (equal priors, mean visited Q 0.15),
    sigma spans (50 + 6) * 0.1 = 5.6 logits: p = (0.004, 0.053, 0.943)."""
    from xtra.act.selfplay import SelfPlay
    from xtra.config import tiny
    from xtra.envs import make_env

    cfg = tiny()
    env = make_env("family/catch", cfg.env, num_envs=8, seed=0)
    sp = SelfPlay(env, np.random.default_rng(0), frame_stack=cfg.env.frame_stack)
    counts = np.zeros(env.num_actions)
    step = env.step

    def counting_step(actions):
        np.add.at(counts, actions, 1)
        return step(actions)

    env.step = counting_step
    for _ in range(100):
        sp.step(_FixedPlanner(), temperature=1.0, selection=selection)
    share = counts / counts.sum()
    if selection == "visits":
        assert share[0] == pytest.approx(0.75, abs=0.05) and share[1] == 0
    else:
        v_mix = 8 * 0.15 / 9
        scaled = (np.array([-0.5, v_mix, 0.8]) + 0.5) / 1.3
        p = np.exp(5.6 * scaled) / np.exp(5.6 * scaled).sum()
        np.testing.assert_allclose(share, p, atol=0.03)
        np.testing.assert_allclose(p, [0.004, 0.053, 0.943], atol=0.001)
