"""Reanalysis targets from a stub network whose outputs are known, checked by hand."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xtra.act.planner import PlanResult
from xtra.actions import scatter_policy
from xtra.config import tiny
from xtra.data.replay import ReplayBuffer
from xtra.data.trajectory import TrajectoryBuilder
from xtra.learn.batch import to_learn_batch
from xtra.learn.reanalyze import reanalyze, unrolled_obs

LEGAL = np.array([0, 3, 4])  # toy/catch: NOOP, RIGHT, LEFT


class StubPlanner:
    """Value = 2.0 for every state; search policy = (0.5, 0.25, 0.25) everywhere."""

    device = torch.device("cpu")

    def __init__(self):
        self.planned = 0

    def root_inference(self, obs):
        return SimpleNamespace(value=torch.full((len(obs),), 2.0))

    def plan(self, obs, legal_actions, *, add_noise, rng, num_simulations=None):
        assert add_noise  # EZ reanalyses with Dirichlet noise (A6.4)
        n = len(obs)
        self.planned += n
        visits = np.tile([0.5, 0.25, 0.25], (n, 1))
        return PlanResult(
            visit_counts=(visits * 4).astype(np.int64),
            visit_policy=visits,
            root_values=np.zeros(n),
            network_values=np.zeros(n, np.float32),
        )


def _buffer(rewards, terminated):
    builder = TrajectoryBuilder(frame_stack=2, frame_shape=(3, 4, 4), num_actions=3)
    builder.start(np.zeros((2, 3, 4, 4), np.uint8))
    for t, r in enumerate(rewards):
        builder.add(
            t % 3,
            int(LEGAL[t % 3]),
            r,
            r,
            np.full((3, 4, 4), t + 1, np.uint8),
            np.array([0.0, 1.0, 0.0]),
            0.0,
        )
    buf = ReplayBuffer(
        frame_shape=(3, 4, 4), frame_stack=2, action_ids=LEGAL, capacity=1000, alpha=0.6
    )
    buf.add(builder.finish(terminated=terminated))
    return buf


def _reanalyze(batch, buf, planner, cfg, rng):
    return reanalyze(
        batch,
        buf,
        planner,
        rng,
        discount=cfg.discount,
        lstm_horizon=cfg.search.lstm_horizon,
        policy_size=cfg.model.policy_size,
        reanalyze_ratio=cfg.targets.reanalyze_ratio,
    )


def _cfg(ratio):
    cfg = tiny()
    return dataclasses.replace(
        cfg,
        env=dataclasses.replace(cfg.env, frame_stack=2),
        targets=dataclasses.replace(cfg.targets, unroll_steps=2, td_steps=3, reanalyze_ratio=ratio),
    )


def test_value_targets_bootstrap_from_the_target_network_by_hand():
    rewards = [1.0, 0.0, -1.0, 1.0, 0.0, 1.0]
    buf = _buffer(rewards, terminated=True)
    cfg = _cfg(ratio=1.0)
    g = cfg.discount
    batch = buf.batch_at(
        np.array([0, 3]),
        np.ones(2, np.float32),
        unroll_steps=2,
        td_steps=3,
        auto_td_steps=None,
        rng=np.random.default_rng(0),
    )
    targets = _reanalyze(batch, buf, StubPlanner(), cfg, np.random.default_rng(0))
    v = 2.0
    # sample t=0: u=0 -> r0 + g r1 + g^2 r2 + g^3 v(s3); u=1 -> r1 + g r2 + g^2 r3 + g^3 v(s4); u=2 -> ... v(s5)
    expected0 = [1 + 0 * g - g**2 + g**3 * v, 0 - g + g**2 + g**3 * v, -1 + g + 0 * g**2 + g**3 * v]
    # sample t=3 (T=6): u=0 -> r3 + g r4 + g^2 r5 (bootstrap at 6 = T: none); u=1 -> r4 + g r5; u=2 -> r5
    expected1 = [1 + 0 * g + g**2, 0 + g, 1.0]
    assert targets.value[0].numpy() == pytest.approx(expected0, rel=1e-5)
    assert targets.value[1].numpy() == pytest.approx(expected1, rel=1e-5)
    # value prefixes: sums of r_t..r_{t+k-1}
    assert targets.value_prefix[0].numpy() == pytest.approx([1.0, 1.0])
    assert targets.value_prefix[1].numpy() == pytest.approx([1.0, 1.0])


def test_policy_targets_search_on_real_positions_and_scatter_to_ale_ids():
    buf = _buffer([0.0] * 4, terminated=True)
    cfg = _cfg(ratio=0.5)
    planner = StubPlanner()
    # t=3 is the last step: positions t+1, t+2 are past the end
    batch = buf.batch_at(
        np.array([3, 0]),
        np.ones(2, np.float32),
        unroll_steps=2,
        td_steps=3,
        auto_td_steps=None,
        rng=np.random.default_rng(0),
    )
    targets = _reanalyze(batch, buf, planner, cfg, np.random.default_rng(0))
    pol = targets.policy.numpy()
    assert pol.shape == (2, 3, 18)
    # first half reanalysed: searched only at its one real position
    assert planner.planned == 1
    assert pol[0, 0, LEGAL] == pytest.approx([0.5, 0.25, 0.25])
    assert pol[0, 1:].sum() == 0
    # second half: the stored self-play distribution (all on slot 1 = ALE id 3)
    assert pol[1, :, 3] == pytest.approx([1.0, 1.0, 1.0])
    assert pol[1].sum() == pytest.approx(3.0)
    lb = to_learn_batch(batch, targets, LEGAL, policy_size=18, device=torch.device("cpu"))
    assert lb.policy_mask[:, LEGAL].all() and lb.policy_mask.sum() == 2 * 3


def test_unrolled_obs_and_scatter_helpers():
    frames = np.arange(2 * 4 * 1 * 1 * 1).reshape(2, 4, 1, 1, 1)
    obs = unrolled_obs(frames, frame_stack=2, unroll_steps=2)
    assert obs.shape == (2, 3, 2, 1, 1)
    assert obs[0, :, :, 0, 0].tolist() == [[0, 1], [1, 2], [2, 3]]
    frames = np.random.default_rng(0).integers(0, 255, (3, 7, 3, 4, 5), dtype=np.uint8)
    want = unrolled_obs(frames, frame_stack=4, unroll_steps=3)
    got = unrolled_obs(torch.as_tensor(frames), frame_stack=4, unroll_steps=3)
    assert isinstance(got, torch.Tensor) and np.array_equal(got.numpy(), want)
    out = scatter_policy(np.array([[0.2, 0.8]]), np.array([5, 1]), 18)
    assert (
        out[0, 5] == pytest.approx(0.2)
        and out[0, 1] == pytest.approx(0.8)
        and out.sum() == pytest.approx(1.0)
    )
