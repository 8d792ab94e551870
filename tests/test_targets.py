"""Data-side targets: vectorised functions vs plain loops and hand-computed numbers (spec A6.4)."""

import numpy as np
import pytest

from xtra.data import (
    ReplayBuffer,
    Trajectory,
    n_step_value_targets,
    td_steps_for_age,
    value_prefix_targets,
    xtra_as_coded_value_targets,
)


def loop_n_step(rewards, values, td, mask, valid, discount):
    b, u = values.shape
    z = np.zeros((b, u))
    for i in range(b):
        for j in range(u):
            if not mask[i, j]:
                continue
            acc = sum(discount**m * rewards[i, j + m] for m in range(td[i]))
            if valid[i, j]:
                acc += discount ** td[i] * values[i, j]
            z[i, j] = acc
    return z


def loop_value_prefix(rewards, mask, horizon):
    """EZ HEAD's loop (reanalyze_worker): reset every `horizon` positions, add only real steps."""
    b, k = rewards.shape[0], mask.shape[1] - 1
    out = np.zeros((b, k))
    for i in range(b):
        vp = 0.0
        for u in range(k):
            if u % horizon == 0:
                vp = 0.0
            if mask[i, u]:
                vp += rewards[i, u]
            out[i, u] = vp
    return out


# --------------------------------------------------------------------------- TD length


@pytest.mark.parametrize(
    "age, n",
    [
        (0, 5),
        (1, 5),
        (29999, 5),
        (30000, 4),
        (59999, 4),
        (60000, 3),
        (119999, 2),
        (120000, 1),
        (150000, 1),
        (10**7, 1),
    ],
)
def test_td_steps_for_age_table(age, n):
    assert td_steps_for_age(age, td_steps=5, auto_td_steps=30000) == n


def test_td_steps_for_age_vectorised():
    ages = np.array([0, 30000, 90000, 200000])
    np.testing.assert_array_equal(
        td_steps_for_age(ages, td_steps=5, auto_td_steps=30000), [5, 4, 2, 1]
    )
    with pytest.raises(ValueError):
        td_steps_for_age(-1, td_steps=5, auto_td_steps=30000)


# --------------------------------------------------------------------------- n-step values


def test_n_step_by_hand_trajectory_ends_inside_the_window():
    # T = 4, rewards r_0..r_3 = 1, 2, 3, 4; sample t = 1, K = 3, n = 2, gamma = 0.5.
    # Window rewards r_1..r_5 = 2, 3, 4, 0, 0.  Positions t+u = 1, 2, 3, 4.
    rewards = np.array([[2.0, 3.0, 4.0, 0.0, 0.0]])
    values = np.array([[10.0, 20.0, 30.0, 40.0]])  # v(s_{t+u+n}) = v(s_3), v(s_4), ...
    mask = np.array([[1, 1, 1, 0]])  # t+u < 4
    valid = np.array([[1, 0, 0, 0]])  # t+u+2 < 4 only for u = 0
    z = n_step_value_targets(rewards, values, np.array([2]), mask, valid, discount=0.5)
    # u=0: 2 + .5*3 + .25*10 = 6;  u=1: 3 + .5*4 = 5;  u=2: 4 + .5*0 = 4;  u=3: past the end, 0
    np.testing.assert_allclose(z, [[6.0, 5.0, 4.0, 0.0]])


def test_n_step_varying_td_per_sample():
    rewards = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 4.0, 8.0]])
    values = np.array([[100.0, 100.0], [100.0, 100.0]])
    td = np.array([1, 3])
    ones = np.ones((2, 2))
    z = n_step_value_targets(rewards, values, td, ones, ones, discount=0.5)
    # sample 0, n=1: r + .5 v = 1 + 50;  sample 1, n=3: 1 + 1 + 1 + 12.5 and 2 + 2 + 2 + 12.5
    np.testing.assert_allclose(z, [[51.0, 51.0], [15.5, 18.5]])


@pytest.mark.parametrize("seed", range(5))
def test_n_step_vectorised_matches_loop(seed):
    rng = np.random.default_rng(seed)
    b, k, n = 64, 5, 5
    rewards = rng.normal(size=(b, k + n))
    values = rng.normal(size=(b, k + 1))
    td = rng.integers(1, n + 1, size=b)
    mask = rng.random((b, k + 1)) < 0.8
    valid = rng.random((b, k + 1)) < 0.7
    z = n_step_value_targets(rewards, values, td, mask, valid, discount=0.997**4)
    np.testing.assert_allclose(
        z, loop_n_step(rewards, values, td, mask, valid, 0.997**4), rtol=1e-5, atol=1e-5
    )


def test_n_step_rejects_too_few_reward_columns():
    with pytest.raises(ValueError):
        n_step_value_targets(
            np.zeros((1, 5)),
            np.zeros((1, 6)),
            np.array([5]),
            np.ones((1, 6)),
            np.ones((1, 6)),
            discount=0.9,
        )


def _traj(length: int, terminated: bool) -> Trajectory:
    return Trajectory(
        frames=np.zeros((2 + length, 1, 2, 2), np.uint8),
        actions=np.zeros(length, np.int64),
        ale_actions=np.zeros(length, np.int64),
        rewards=np.arange(1, length + 1, dtype=np.float32),
        raw_rewards=np.arange(1, length + 1, dtype=np.float32),
        root_visits=np.ones((length, 1), np.float32),
        root_values=np.full(length, 7.0, np.float32),
        terminated=terminated,
    )


@pytest.mark.parametrize("terminated", [True, False])
def test_targets_from_sampled_batch_terminated_and_truncated(terminated):
    """End to end: buffer windows + targets equal a loop over the raw trajectory.

    EZ HEAD semantics for both: no bootstrap from t+u+n >= T (a truncated trajectory has no data
    there either); the flag is passed on so a caller may treat the two differently.
    """
    k, n, gamma = 3, 2, 0.5
    buf = ReplayBuffer(
        frame_shape=(1, 2, 2), frame_stack=2, action_ids=[0], capacity=100, alpha=1.0
    )
    tr = _traj(5, terminated)
    tid = buf.add(tr)
    idx = np.arange(5)
    batch = buf.batch_at(
        idx,
        np.ones(5),
        unroll_steps=k,
        td_steps=n,
        auto_td_steps=None,
        rng=np.random.default_rng(0),
    )
    assert np.all(batch.terminated == terminated)

    def v(pos):  # a made-up value function of the state s_pos
        return 100.0 + pos

    boot_values = v(batch.bootstrap_positions).astype(float)
    z = n_step_value_targets(
        batch.rewards,
        boot_values,
        batch.td_steps,
        batch.mask,
        batch.bootstrap_valid,
        discount=gamma,
    )
    for b, t in enumerate(batch.positions):
        for u in range(k + 1):
            p = t + u
            if p >= tr.length:
                expected = 0.0
            else:
                expected = sum(gamma**i * tr.rewards[p + i] for i in range(n) if p + i < tr.length)
                if p + n < tr.length:
                    expected += gamma**n * v(p + n)
            assert z[b, u] == pytest.approx(expected), (t, u)
    # by hand, t = 3 (T = 5): u=0: r3 + .5 r4 = 4 + 2.5 = 6.5 (s_5 is past the data: no bootstrap)
    assert z[3, 0] == pytest.approx(6.5)
    assert buf.stacked_obs(np.array([tid]), np.array([5])).shape == (1, 2, 1, 2, 2)


# --------------------------------------------------------------------------- value prefix


def test_value_prefix_by_hand_with_reset_and_end():
    rewards = np.array([[1.0, 2, 3, 4, 5, 6, 7, 8], [1.0, 2, 3, 4, 5, 6, 7, 8]])
    full = np.ones((2, 8))
    full[1, 3:] = 0  # second sample: trajectory ends after 3 steps
    vp = value_prefix_targets(rewards, full, lstm_horizon=5)
    np.testing.assert_allclose(vp[0], [1, 3, 6, 10, 15, 6, 13])  # reset at the 6th step
    np.testing.assert_allclose(vp[1], [1, 3, 6, 6, 6, 0, 0])  # stops growing, then reset
    np.testing.assert_allclose(
        value_prefix_targets(rewards, full, lstm_horizon=100)[0], [1, 3, 6, 10, 15, 21, 28]
    )


@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_value_prefix_vectorised_matches_loop(horizon):
    rng = np.random.default_rng(horizon)
    b, k = 50, 7
    rewards = rng.integers(-1, 2, size=(b, k + 5)).astype(float)
    length_left = rng.integers(1, k + 3, size=b)  # T - t
    mask = (np.arange(k + 1)[None, :] < length_left[:, None]).astype(float)
    np.testing.assert_allclose(
        value_prefix_targets(rewards, mask, lstm_horizon=horizon),
        loop_value_prefix(rewards, mask, horizon),
    )


def test_xtra_as_coded_by_hand():
    rewards = np.array([[1.0, 2.0, 0.0, 0.0]])
    roots = np.array([[10.0, 20.0]])
    mask = np.array([[1.0, 1.0]])
    z = xtra_as_coded_value_targets(rewards, roots, mask, discount=0.5, n=3)
    # u=0: 10 + 1 + .5*2 + 0 = 12;  u=1: 20 + 2 + 0 + 0 = 22
    np.testing.assert_allclose(z, [[12.0, 22.0]])
