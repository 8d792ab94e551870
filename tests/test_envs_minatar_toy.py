"""MinAtar (against minatar itself) and the toy games (against their known returns)."""

from __future__ import annotations

from fractions import Fraction

import minatar
import numpy as np
import pytest

from xtra.config import EnvConfig
from xtra.envs import OPTIMAL_RETURN, RANDOM_RETURN, make_env, resolve_game
from xtra.envs.minatar import MAX_CHANNELS, MINATAR_GAMES, PALETTE, RENDERERS, render_rgb
from xtra.envs.toy import OPTIMAL_STEPS, optimal_discounted_return
from xtra.errors import GameError, XtraError

# MinAtar minimal action sets in ALE ids (n->0, f->1, u->2, r->3, l->4, d->5), minimal-set order.
LEGAL = {
    "asterix": [0, 4, 2, 3, 5],
    "breakout": [0, 4, 3],
    "freeway": [0, 2, 5],
    "seaquest": [0, 4, 2, 3, 5, 1],
    "space_invaders": [0, 4, 3, 1],
}
CHANNELS = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}


# --------------------------------------------------------------------------- MinAtar


@pytest.mark.parametrize("name", MINATAR_GAMES)
def test_minatar_shapes_and_action_mapping(name):
    env = make_env(f"minatar/{name}", EnvConfig(), num_envs=2, seed=0)
    assert env.game == f"minatar/{name}"
    np.testing.assert_array_equal(env.legal_actions, LEGAL[name])
    assert env.legal_actions.dtype == np.int64 and env.num_actions == len(LEGAL[name])
    assert env.frame_shape == (3, 10, 10) and env.obs_shape == (12, 10, 10)
    obs = env.reset()
    assert obs.shape == (2, 12, 10, 10) and obs.dtype == np.uint8
    native = make_env(f"minatar/{name}", EnvConfig(minatar_obs="channels"), num_envs=1, seed=0)
    c = CHANNELS[name]
    assert native.frame_shape == (c, 10, 10) and native.obs_shape == (4 * c, 10, 10)
    first = native.reset()
    assert set(np.unique(first)) <= {0, 255}
    # planes: the same native channels, padded to one depth for every game.
    planes = make_env(f"minatar/{name}", EnvConfig(minatar_obs="planes"), num_envs=1, seed=0)
    assert planes.frame_shape == (MAX_CHANNELS, 10, 10) == (max(CHANNELS.values()), 10, 10)
    padded = planes.reset()[0, -MAX_CHANNELS:]
    np.testing.assert_array_equal(padded[:c], first[0, -c:])
    assert not padded[c:].any()


@pytest.mark.parametrize("name", ["breakout", "seaquest"])
@pytest.mark.parametrize("obs_kind", ["rgb", "channels", "planes"])
def test_minatar_matches_minatar_itself(name, obs_kind):
    seed = 4
    env = make_env(
        f"minatar/{name}", EnvConfig(minatar_obs=obs_kind), num_envs=1, seed=seed, mode="train"
    )
    render = RENDERERS[obs_kind]
    ref = minatar.Environment(name, sticky_action_prob=0.0)
    ref.seed(seed)
    ref.reset()
    obs = env.reset()
    np.testing.assert_array_equal(obs[0, -env.frame_shape[0] :], render(ref.state()))
    rng = np.random.default_rng(0)
    games, ret, length = 0, 0.0, 0
    for _ in range(400):
        a = int(rng.integers(env.num_actions))
        res = env.step(np.array([a]))
        r, done = ref.act(ref.minimal_action_set()[a])
        ret, length = ret + r, length + 1
        final = render(ref.state())
        np.testing.assert_array_equal(res.final_obs[0, -env.frame_shape[0] :], final)
        assert res.raw_reward[0] == r and res.reward[0] == np.sign(r)
        assert res.terminated[0] == done == res.game_over[0]
        if done:
            assert res.episode_return[0] == ret and res.episode_length[0] == length
            games, ret, length = games + 1, 0.0, 0
            ref.reset()
        np.testing.assert_array_equal(res.obs[0, -env.frame_shape[0] :], render(ref.state()))
    assert games >= 1


def test_minatar_rgb_later_channel_wins():
    state = np.zeros((10, 10, 4), dtype=bool)
    state[0, 0, 0] = True
    state[0, 0, 2] = True  # overlaps channel 0: channel 2 is drawn
    state[5, 5, 1] = True
    frame = render_rgb(state)
    assert frame.shape == (3, 10, 10) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[:, 0, 0], PALETTE[2])
    np.testing.assert_array_equal(frame[:, 5, 5], PALETTE[1])
    assert frame[:, 1:5].sum() == 0
    assert len({tuple(c) for c in PALETTE}) == len(PALETTE) >= max(CHANNELS.values())


def test_minatar_batch_determinism_and_cap():
    cfg = EnvConfig()
    rng = np.random.default_rng(0)
    actions = rng.integers(3, size=(60, 3))
    batch = make_env("minatar/breakout", cfg, num_envs=3, seed=10, max_episode_steps=25)
    singles = [
        make_env("minatar/breakout", cfg, num_envs=1, seed=10 + i, max_episode_steps=25)
        for i in range(3)
    ]
    obs = batch.reset()
    for i, s in enumerate(singles):
        np.testing.assert_array_equal(obs[i], s.reset()[0])
    for a in actions:
        res = batch.step(a)
        for i, s in enumerate(singles):
            r = s.step(a[i : i + 1])
            np.testing.assert_array_equal(res.obs[i], r.obs[0])
            np.testing.assert_array_equal(res.game_over[i], r.game_over[0])
        # Breakout games of a random policy can be shorter than the cap, never longer.
        assert (res.episode_length <= 25).all()
        assert not (res.truncated & res.terminated).any()
    np.testing.assert_array_equal(batch.reset(seeds=[10, 11, 12]), obs)


def test_minatar_truncates_at_cap():
    env = make_env("minatar/freeway", EnvConfig(), num_envs=2, seed=0, max_episode_steps=5)
    env.reset()
    for t in range(1, 6):
        res = env.step(np.array([1, 1]))  # UP: freeway games last 2500 steps
        assert res.truncated.all() == (t == 5) and res.game_over.all() == (t == 5)
    np.testing.assert_array_equal(res.episode_length, [5, 5])


# --------------------------------------------------------------------------- toys


def catch_policy(obs: np.ndarray) -> np.ndarray:
    """Optimal catch policy from the newest frame: move the paddle (green) under the ball (red)."""
    frame = obs[:, -3:, ::2, ::2]  # [N, 3, 5, 5] grid of the newest frame
    ball = frame[:, 0].max(axis=1).argmax(axis=1)
    paddle = frame[:, 1, -1].argmax(axis=1)
    # local actions: 0 NOOP, 1 RIGHT, 2 LEFT
    return np.where(ball > paddle, 1, np.where(ball < paddle, 2, 0))


def test_catch_optimal_policy_gets_optimal_return():
    env = make_env("toy/catch", EnvConfig(), num_envs=16, seed=0)
    np.testing.assert_array_equal(env.legal_actions, [0, 3, 4])
    assert env.frame_shape == (3, 10, 10)
    obs = env.reset()
    returns = []
    for _ in range(4 * 10):
        res = env.step(catch_policy(obs))
        obs = res.obs
        returns.extend(res.episode_return[res.game_over])
        assert (res.episode_length[res.game_over] == OPTIMAL_STEPS["toy/catch"]).all()
    assert len(returns) == 160
    assert all(r == OPTIMAL_RETURN["toy/catch"] for r in returns)


def test_catch_random_return_is_exactly_minus_0_6():
    # Exact: distribution of the paddle after 4 uniformly random moves, ball column uniform.
    p = np.zeros(5)
    p[2] = 1.0
    for _ in range(4):
        q = np.zeros(5)
        for col in range(5):
            for move in (-1, 0, 1):
                q[min(max(col + move, 0), 4)] += p[col] / 3
        p = q
    catch = float(np.sum(p / 5))
    assert abs((2 * catch - 1) - RANDOM_RETURN["toy/catch"]) < 1e-12
    # Simulated with the env itself.
    env = make_env("toy/catch", EnvConfig(), num_envs=500, seed=1)
    env.reset()
    rng = np.random.default_rng(0)
    returns = []
    for _ in range(4 * 8):
        res = env.step(rng.integers(3, size=500))
        returns.extend(res.episode_return[res.game_over])
    assert len(returns) == 4000
    assert abs(np.mean(returns) - RANDOM_RETURN["toy/catch"]) < 0.05  # ~4 standard errors


def test_catch_ball_falls_and_starts_in_random_columns():
    env = make_env("toy/catch", EnvConfig(frame_stack=1), num_envs=64, seed=0)
    obs = env.reset()
    grid = obs[:, 0, ::2, ::2]  # red channel, [N, 5, 5]
    assert (grid[:, 0].max(axis=1) == 255).all() and grid[:, 1:].sum() == 0
    assert len(set(grid[:, 0].argmax(axis=1))) == 5
    res = env.step(np.zeros(64, dtype=np.int64))
    assert (res.obs[:, 0, ::2, ::2][:, 1].max(axis=1) == 255).all()


def test_chain_optimal_and_random_returns():
    env = make_env("toy/chain", EnvConfig(), num_envs=4, seed=0)
    np.testing.assert_array_equal(env.legal_actions, [3, 4])
    env.reset()
    for t in range(1, 6):
        res = env.step(np.zeros(4, dtype=np.int64))  # RIGHT
        assert res.game_over.all() == (t == 5)
    np.testing.assert_array_equal(res.episode_return, [1.0] * 4)
    np.testing.assert_array_equal(res.episode_length, [5] * 4)
    assert OPTIMAL_RETURN["toy/chain"] == 1.0
    assert optimal_discounted_return("toy/chain", 0.9) == pytest.approx(0.9**4)

    # Always LEFT: truncated by the game's own 20-step limit, return 0.
    env.reset()
    for t in range(1, 21):
        res = env.step(np.ones(4, dtype=np.int64))
        assert res.truncated.all() == (t == 20) and not res.terminated.any()
    np.testing.assert_array_equal(res.episode_return, [0.0] * 4)

    # Random policy, exactly: reflecting walk from cell 0, absorbed at cell 5, 20 steps.
    p = [Fraction(0)] * 6
    p[0], hit = Fraction(1), Fraction(0)
    for _ in range(20):
        q = [Fraction(0)] * 6
        for s in range(5):
            q[max(s - 1, 0)] += p[s] / 2
            q[s + 1] += p[s] / 2
        hit, q[5] = hit + q[5], Fraction(0)
        p = q
    assert hit == Fraction(237063, 524288) and float(hit) == RANDOM_RETURN["toy/chain"]
    env = make_env("toy/chain", EnvConfig(), num_envs=400, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    returns = []
    for _ in range(200):
        res = env.step(rng.integers(2, size=400))
        returns.extend(res.episode_return[res.game_over])
    assert len(returns) > 4000
    assert abs(np.mean(returns) - RANDOM_RETURN["toy/chain"]) < 0.03  # ~4 standard errors


def test_toy_cap_from_mode_and_determinism():
    env = make_env("toy/chain", EnvConfig(), num_envs=2, seed=0, mode="eval", max_episode_steps=3)
    env.reset()
    for _ in range(3):
        res = env.step(np.zeros(2, dtype=np.int64))
    assert res.truncated.all() and (res.episode_length == 3).all()
    a = make_env("toy/catch", EnvConfig(), num_envs=3, seed=5)
    b = make_env("toy/catch", EnvConfig(), num_envs=3, seed=5)
    np.testing.assert_array_equal(a.reset(), b.reset())
    for _ in range(12):
        act = np.array([0, 1, 2])
        np.testing.assert_array_equal(a.step(act).obs, b.step(act).obs)
    single = make_env("toy/catch", EnvConfig(), num_envs=1, seed=6)
    np.testing.assert_array_equal(
        single.reset()[0], make_env("toy/catch", EnvConfig(), num_envs=3, seed=5).reset()[1]
    )


def test_names_and_bad_input():
    assert resolve_game("MinAtar/Space-Invaders") == "minatar/space_invaders"
    assert resolve_game("TOY/CATCH") == "toy/catch"
    for bad in ("minatar/pong", "toy/cartpole"):
        with pytest.raises(GameError) as e:
            make_env(bad, EnvConfig(), num_envs=1, seed=0)
        assert "\n" not in str(e.value)
    with pytest.raises(GameError, match="toy/catch"):
        resolve_game("toy/catc")
    env = make_env("minatar/breakout", EnvConfig(), num_envs=1, seed=0)
    env.reset()
    with pytest.raises(XtraError, match="out of range"):
        env.step(np.array([3]))
    env = make_env("toy/chain", EnvConfig(), num_envs=2, seed=0)
    env.reset()
    with pytest.raises(XtraError, match="out of range"):
        env.step(np.array([0, 2]))
    with pytest.raises(XtraError, match="negative"):
        env.reset(seeds=[0, -1])


def test_returned_observations_are_never_overwritten():
    """Observations are views of the env's stack: later steps and resets must not change them."""
    env = make_env("toy/catch", EnvConfig(), num_envs=3, seed=0)
    held = [env.reset()]
    copies = [held[0].copy()]
    for _ in range(9):  # two auto-resets of every env
        res = env.step(np.array([0, 1, 2]))
        held += [res.obs, res.final_obs]
        copies += [res.obs.copy(), res.final_obs.copy()]
    held.append(env.reset(seeds=[4, 5, 6]))
    copies.append(held[-1].copy())
    env.step(np.array([0, 1, 2]))
    for h, c in zip(held, copies):
        np.testing.assert_array_equal(h, c)
