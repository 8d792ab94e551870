"""The task families: exact random and optimal returns, the relations between variants (same
dynamics, other look; opposed reward; ...), both names of each variant, determinism."""

from __future__ import annotations

import pickle

import gymnasium
import numpy as np
import pytest

from xtra.cli import main
from xtra.config import tiny
from xtra.envs import families as fam
from xtra.envs import make_env, resolve_game
from xtra.games import FAMILY, get_game

VARIANTS = tuple(fam.VARIANTS)


def test_registry_lists_every_variant_with_exact_returns():
    assert FAMILY == fam.NAMES and FAMILY[0] == "family/catch"
    for v in VARIANTS:
        game = get_game(f"family/{v}")
        random_return, optimal_return = fam.exact_returns(v)
        assert game.suite == "family" and game.legal_actions == fam.ALE_IDS
        assert game.random_score == pytest.approx(random_return, abs=1e-9), v
        assert game.optimal_score == pytest.approx(optimal_return, abs=1e-9), v
        assert game.optimal_score > game.random_score


def test_documented_values():
    table = {g: (get_game(g).random_score, get_game(g).optimal_score) for g in FAMILY}
    assert table["family/catch"] == (-4.0, 5.0)  # random catches 1 ball in 10
    assert table["family/catch-wide"] == (-2.0, 5.0)  # 3 in 10
    assert table["family/catch-avoid"] == (4.0, 5.0)
    assert table["family/catch-fast"][1] == pytest.approx(3.70184)  # not every ball reachable
    assert table["family/courier"] == pytest.approx((0.294586, 3.732310), abs=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_both_names_build_the_same_game(variant):
    factory = f"xtra.envs.families:{fam.factory_name(variant)}"
    assert resolve_game(f"Family/{variant.upper()}") == f"family/{variant}"
    a = make_env(f"family/{variant}", tiny().env, num_envs=2, seed=3)
    b = make_env(factory, tiny().env, num_envs=2, seed=3)
    assert a.game == f"family/{variant}" and b.game == factory
    assert a.obs_shape == b.obs_shape == (12, 10, 10)
    assert a.legal_actions.tolist() == b.legal_actions.tolist() == [0, 3, 4]
    assert get_game(factory).random_score == get_game(f"family/{variant}").random_score
    rng = np.random.default_rng(0)
    assert (a.reset() == b.reset()).all()
    for _ in range(60):
        acts = rng.integers(3, size=2)
        x, y = a.step(acts), b.step(acts)
        assert (x.obs == y.obs).all() and (x.raw_reward == y.raw_reward).all()
        assert (x.terminated == y.terminated).all() and (x.truncated == y.truncated).all()


def _play(variant: str, policy, episodes: int, seed: int = 0) -> np.ndarray:
    """Returns of ``episodes`` games of the raw gymnasium env under ``policy(env) -> action``."""
    env = fam.make(variant)
    assert isinstance(env, gymnasium.Env)
    out = []
    for e in range(episodes):
        env.reset(seed=seed + e)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(policy(env))
            total, done = total + r, term or trunc
        out.append(total)
    return np.array(out)


def _toward_ball(env) -> int:
    _, col, d, paddle, _ = env._state
    target = col
    if d:  # where a drifting ball will land: simulate it (the paddle cannot change it)
        row, c = env._state[0], col
        while row < fam.SIZE - 1:
            row, c = min(row + env.rules.fall, fam.SIZE - 1), c + d
            if c < 0 or c > fam.SIZE - 1:
                c, d = (1, 1) if c < 0 else (fam.SIZE - 2, -1)
        target = c
    return 0 if paddle == target else (1 if target > paddle else 2)


def _courier(env) -> int:
    _, pos, parcel, carrying = env._state
    goal = fam.DEPOT if carrying else parcel
    return 0 if pos == goal else (1 if goal > pos else 2)


def test_scripted_optimal_policies_reach_the_optimum():
    for v in ("catch", "catch-colors", "catch-texture", "catch-wide", "catch-drift"):
        assert (_play(v, _toward_ball, 20) == 5).all(), v
    avoid = _play("catch-avoid", lambda env: 2 if _toward_ball(env) != 2 else 1, 20)
    assert avoid.mean() >= 4.5  # dodging (a cruder policy than optimal) gets near 5
    courier = _play("courier", _courier, 1000)  # fetch and deliver: optimal
    sem = courier.std() / np.sqrt(len(courier))
    assert abs(courier.mean() - get_game("family/courier").optimal_score) < 4 * sem


@pytest.mark.parametrize("variant", ("catch", "catch-wide", "catch-drift", "courier"))
def test_random_policy_matches_the_exact_random_return(variant):
    rng = np.random.default_rng(1)
    returns = _play(variant, lambda env: int(rng.integers(3)), 1500)
    sem = returns.std() / np.sqrt(len(returns))
    assert abs(returns.mean() - get_game(f"family/{variant}").random_score) < 4 * sem + 1e-9


def test_relations_between_variants():
    """Same seed and actions: appearance variants differ only in pixels, the opposed variant
    only in the sign of its rewards, the dynamics variants in their trajectories."""
    rng = np.random.default_rng(0)
    acts = rng.integers(3, size=200)

    def run(variant):
        env = fam.make(variant)
        frames, rewards = [env.reset(seed=11)[0]], []
        for a in acts:
            obs, r, term, trunc, _ = env.step(int(a))
            frames.append(obs)
            rewards.append(r)
            if term or trunc:
                frames.append(env.reset()[0])
        return np.array(frames), np.array(rewards)

    def objects(frames, variant):  # where the ball and the paddle are drawn
        look = fam.VARIANTS[variant].look
        return (frames == look.ball).all(-1) | (frames == look.paddle).all(-1)

    frames, rewards = run("catch")
    for look in ("catch-colors", "catch-texture"):
        f, r = run(look)
        assert (r == rewards).all() and f.shape == frames.shape and not (f == frames).all()
        assert (objects(f, look) == objects(frames, "catch")).all()
    f, r = run("catch-avoid")
    assert (f == frames).all() and (r == -rewards).all()
    for dyn in ("catch-fast", "catch-drift", "catch-wide"):
        f, r = run(dyn)
        assert not (f[: len(frames)] == frames[: len(f)]).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_envs_are_deterministic_given_the_seed_and_pickle(variant):
    a, b = fam.make(variant), fam.make(variant)
    assert (a.reset(seed=5)[0] == b.reset(seed=5)[0]).all()
    for t in range(20):
        x, y = a.step(t % 3), b.step(t % 3)
        assert (x[0] == y[0]).all() and x[1:] == y[1:]
    c = pickle.loads(pickle.dumps(a))
    for t in range(60):
        x, y = a.step(t % 3), c.step(t % 3)
        assert (x[0] == y[0]).all() and x[1:] == y[1:]
        if x[2] or x[3]:
            assert (a.reset()[0] == c.reset()[0]).all()
    obs = a.reset(seed=0)[0]
    assert obs.shape == (10, 10, 3) and obs.dtype == np.uint8 and a.observation_space.contains(obs)
    assert (a.render() == obs).all()
    assert a.metadata["xtra_ale_ids"] == (0, 3, 4)
    with pytest.raises(ValueError):
        a.step(3)


def test_xtra_games_lists_the_families(capsys):
    assert main(["games"]) == 0
    out = capsys.readouterr().out
    # (the table cuts long names short: count the rows)
    assert "family/catch " in out and out.count(" family/") == len(FAMILY)
